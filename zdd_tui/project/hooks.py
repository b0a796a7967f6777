"""Hooks: the project's own executables in `.zdd/hooks/`, run on this machine around a build
and a rollout (as Kamal's are).

    pre-build    before the image is built; a failure stops the build
    pre-deploy   after the plan, before the deploy lock and before any host changes (deploy,
                 rollback and resume alike: ZDD_ACTION says which); a failure refuses the rollout
    post-deploy  after the rollout ends, whatever its outcome (ZDD_OUTCOME); a failure is reported
                 as a warning and never undoes the rollout nor changes its exit code

Each runs with the project's directory (where zdd.yaml is) as its working directory and ZDD_*
variables describing the operation; never with the DigitalOcean token, the SSH key or the
application's secrets (they are taken out of its environment). Its output (stdout and stderr,
merged) is shown line by line as LogLine events, as outside text. A file there that is not
executable is refused with what to do; `<name>.sample` files (what `zdd-tui init` writes) are
never run.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zdd_tui.config import Config
from zdd_tui.errors import RefusedError, ZddError
from zdd_tui.events import Event, LogLine
from zdd_tui.secrets import without_credentials
from zdd_tui.text import visible

if TYPE_CHECKING:
    from zdd_tui.project.open import Project
    from zdd_tui.rollout.events import Outcome, Plan

HOOKS_DIR = Path(".zdd") / "hooks"
PRE_BUILD = "pre-build"
PRE_DEPLOY = "pre-deploy"
POST_DEPLOY = "post-deploy"
HOOK_NAMES = (PRE_BUILD, PRE_DEPLOY, POST_DEPLOY)
LAST_LINES = 10  # of a failed hook's output, quoted in its error
MAX_LINE = 4096  # bytes of one line of a hook's output shown; the rest of it is cut
# Credentials a hook never needs besides those zdd_tui.secrets names (doctl's own variable).
OTHER_CREDENTIALS = ("DIGITALOCEAN_ACCESS_TOKEN",)

Emit = Callable[[Event], Any]


class HookFailed(RefusedError):
    """A pre-hook failed: nothing was changed (exit 4)."""


@dataclass(frozen=True)
class HookRun:
    name: str
    path: Path
    exit_status: int
    last_lines: tuple[str, ...]
    seconds: float

    @property
    def ok(self) -> bool:
        return self.exit_status == 0

    def quoted(self) -> str:
        if not self.last_lines:
            return "(it printed nothing)"
        return "its last lines:\n" + "\n".join(f"  | {line}" for line in self.last_lines)


def project_dir(config: Config) -> Path | None:
    """The project's directory (zdd.yaml's); None for a config that was never a file."""
    return config.path.resolve().parent if config.path is not None else None


def hook_path(config: Config, name: str) -> Path | None:
    """The hook's file when the project has one, else None."""
    root = project_dir(config)
    if root is None:
        return None
    path = root / HOOKS_DIR / name
    return path if path.exists() else None


def hook_env(variables: Mapping[str, str], base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The hook's environment: this process's, minus every credential and every inherited ZDD_*
    variable (a stale one would be taken for this operation's), plus `variables`."""
    env = without_credentials(os.environ if base is None else base)
    env = {k: v for k, v in env.items() if not k.startswith("ZDD_") and k not in OTHER_CREDENTIALS}
    env.update(variables)
    return env


def _emit(emit: Emit | None, name: str, line: str, level: str = "info") -> None:
    if emit is not None:
        emit(LogLine(host=None, line=f"hook {name}: {line}", level=level))


async def run_hook(config: Config, name: str, variables: Mapping[str, str], emit: Emit | None = None) -> HookRun | None:
    """Run the hook `name` if the project has it (None when it has not). Its output goes to
    `emit` as it comes. ZddError when it cannot be started (not executable, not a file)."""
    path = hook_path(config, name)
    if path is None:
        return None
    shown = f"{HOOKS_DIR / name}"
    if not path.is_file():
        raise ZddError(f"hook {shown} is not a file",
                       f"remove it or make it an executable file (in {project_dir(config)})")
    if not os.access(path, os.X_OK):
        raise ZddError(f"hook {shown} exists but is not executable, so it was not run",
                       f"make it executable ('chmod +x {shown}') or remove it")
    _emit(emit, name, "running")
    t0 = time.monotonic()
    last: deque[str] = deque(maxlen=LAST_LINES)
    try:
        proc = await asyncio.create_subprocess_exec(
            str(path), cwd=str(project_dir(config)), env=hook_env(variables), stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    except OSError as exc:  # e.g. a script whose #! names a missing interpreter
        raise ZddError(f"hook {shown} could not be started: {exc.strerror or exc}",
                       "check its first line (#!) and that it runs by hand") from None
    assert proc.stdout is not None

    def show(raw: bytes) -> None:
        # The hook's words, shown and never obeyed by the terminal.
        line = visible(raw.decode("utf-8", "replace").rstrip("\r"))
        last.append(line)
        _emit(emit, name, line)

    try:
        pending, cut = b"", False  # cut: the line in progress was shown already, up to MAX_LINE
        while chunk := await proc.stdout.read(65536):  # in chunks: a line may be longer than a buffer
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for raw in lines:
                if not cut:
                    show(raw)
                cut = False
            if len(pending) > MAX_LINE and not cut:
                show(pending[:MAX_LINE] + b" [...]")
                cut = True
            if cut:
                pending = b""
        if pending and not cut:
            show(pending)
        status = await proc.wait()
    except BaseException:
        # Cancelled (the console closed, Ctrl-C): the hook must not outlive what it was part of.
        if proc.returncode is None:
            proc.kill()
            await asyncio.shield(proc.wait())
        raise
    run = HookRun(name, path, status, tuple(last), time.monotonic() - t0)
    _emit(emit, name, f"exited {status} after {run.seconds:.1f}s", "info" if run.ok else "warning")
    return run


async def pre_hook(config: Config, name: str, variables: Mapping[str, str], emit: Emit | None = None,
                   *, what: str = "nothing was changed") -> None:
    """Run a pre-hook; HookFailed (exit 4) with its last lines when it fails or cannot run."""
    try:
        run = await run_hook(config, name, variables, emit)
    except ZddError as exc:
        raise HookFailed(f"{exc.message}; {what}", exc.hint) from None
    if run is not None and not run.ok:
        raise HookFailed(f"hook {HOOKS_DIR / name} failed (exit {run.exit_status}); {what}; {run.quoted()}",
                         f"fix what it reports, or run it by hand: ./{HOOKS_DIR / name}")


async def post_hook(config: Config, name: str, variables: Mapping[str, str], emit: Emit | None = None,
                    *, what: str = "the rollout stands as it ended") -> HookRun | None:
    """Run a post-hook; its failure (or a hook that cannot run) is reported through `emit` as a
    warning, never raised."""
    try:
        run = await run_hook(config, name, variables, emit)
    except ZddError as exc:
        _emit(emit, name, f"not run: {exc}; {what}", "warning")
        return None
    if run is not None and not run.ok:
        # Its output was shown line by line just above; the last line says where to look.
        last = f"; its last line: {run.last_lines[-1]}" if run.last_lines else "; it printed nothing"
        _emit(emit, name, f"FAILED (exit {run.exit_status}); {what}{last}", "warning")
    return run


def _operation_time() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def rollout_variables(config: Config, plan: Plan, operator: str) -> dict[str, str]:
    """ZDD_* for the pre- and post-deploy hooks."""
    previous = list(dict.fromkeys(h.from_tag for h in plan.hosts if h.from_tag))
    out = {
        "ZDD_APP": config.app,
        "ZDD_ACTION": plan.action,
        "ZDD_TAG": plan.to_tag,
        "ZDD_IMAGE": plan.image_ref,
        "ZDD_HOSTS": ",".join(h.name for h in plan.hosts),
        "ZDD_STRATEGY": getattr(plan, "strategy", "") or "",
        "ZDD_ROLLOUT_ID": plan.rollout_id,
        "ZDD_PERFORMER": operator,
        "ZDD_RECORDED_AT": _operation_time(),
    }
    if previous:
        out["ZDD_PREVIOUS"] = ",".join(previous)
    return out


def build_variables(config: Config, tag: str, operator: str) -> dict[str, str]:
    """ZDD_* for the pre-build hook."""
    return {"ZDD_APP": config.app, "ZDD_ACTION": "build", "ZDD_TAG": tag, "ZDD_IMAGE": f"{config.image_repo}:{tag}",
            "ZDD_PERFORMER": operator, "ZDD_RECORDED_AT": _operation_time()}


def _fan_out(listeners: Iterable[Any]) -> Emit:
    targets = list(listeners)

    def emit(event: Event) -> None:
        for listener in targets:
            try:
                listener(event)
            except Exception:  # noqa: BLE001 - a listener's failure must not fail the hook or the rollout
                pass

    return emit


async def run_rollout(project: Project, plan: Plan, listeners: Iterable[Any] = (), cancel: Any = None,
                      **how: Any) -> Outcome:
    """The rollout between its hooks: pre-deploy (a failure refuses it before the lock, before
    any host changes), the rollout (zdd_tui.project.rollout.run), then post-deploy with its outcome
    (also when it was refused or failed with an error: ZDD_OUTCOME says so)."""
    from zdd_tui.project.rollout import run
    from zdd_tui.rollout.lock import operator_name

    listeners = list(listeners)
    emit = _fan_out(listeners)
    variables = rollout_variables(project.config, plan, operator_name())
    await pre_hook(project.config, PRE_DEPLOY, variables, emit)
    t0 = time.monotonic()
    outcome_word = "error"
    try:
        outcome = await run(project, plan, listeners, cancel, **how)
        outcome_word = outcome.status.value
        return outcome
    except RefusedError:
        outcome_word = "refused"
        raise
    except (asyncio.CancelledError, KeyboardInterrupt):
        outcome_word = "interrupted"
        raise
    finally:
        if hook_path(project.config, POST_DEPLOY) is not None:
            post = {**variables, "ZDD_OUTCOME": outcome_word, "ZDD_RUNTIME": f"{time.monotonic() - t0:.0f}"}
            # Shielded: a cancelled rollout still tells the post-deploy hook how it ended.
            await asyncio.shield(post_hook(project.config, POST_DEPLOY, post, emit))


async def before_build(config: Config, tag: str, emit: Emit | None = None) -> None:
    """The pre-build hook for a build that will tag `tag`; HookFailed when it fails."""
    from zdd_tui.rollout.lock import operator_name

    await pre_hook(config, PRE_BUILD, build_variables(config, tag, operator_name()), emit,
                   what="nothing was built")


_SAMPLE = """\
#!/bin/sh
# zdd-tui {name} hook: a sample that only prints. To use it, rename it to `{name}` (drop
# `.sample`) and keep it executable (chmod +x). zdd-tui runs it on this machine, in the
# project's directory (where zdd.yaml is),
# {when}.
#
# Variables: {variables}
# Not in its environment: the DigitalOcean token, the SSH key and the application's secrets.
#
# Example: {example}
echo "{name}: {echo}"
"""

_SAMPLES = {
    PRE_BUILD: {
        "when": "before it builds the image; a non-zero exit stops the build (nothing is built)",
        "variables": "ZDD_APP, ZDD_ACTION (build), ZDD_TAG (the sha- tag it builds), ZDD_IMAGE,\n"
                     "# ZDD_PERFORMER (user@machine), ZDD_RECORDED_AT (UTC).",
        "example": "refuse to build when the tests fail:\n#   python -m pytest -q || exit 1",
        "echo": "$ZDD_APP $ZDD_TAG"},
    PRE_DEPLOY: {
        "when": "after the plan and before anything changes (before the deploy lock); a non-zero\n"
                "# exit refuses the deploy, rollback or resume (exit code 4) and nothing changes",
        "variables": "ZDD_APP, ZDD_ACTION (deploy | rollback | resume), ZDD_TAG, ZDD_IMAGE,\n"
                     "# ZDD_HOSTS (comma-separated), ZDD_STRATEGY, ZDD_ROLLOUT_ID, ZDD_PREVIOUS (the tags the hosts\n"
                     "# run now, when any), ZDD_PERFORMER, ZDD_RECORDED_AT.",
        "example": "deploy only from a clean main branch:\n"
                   "#   [ \"$(git rev-parse --abbrev-ref HEAD)\" = main ] || { echo 'not on main'; exit 1; }",
        "echo": "$ZDD_ACTION $ZDD_TAG to $ZDD_HOSTS"},
    POST_DEPLOY: {
        "when": "after the rollout ended, whatever the outcome; a non-zero exit is reported as a\n"
                "# warning and changes neither the fleet nor zdd-tui's exit code",
        "variables": "those of pre-deploy, and ZDD_OUTCOME (success | halted | error | refused |\n"
                     "# interrupted) and ZDD_RUNTIME (seconds the rollout took).",
        "example": "tell the team:\n"
                   "#   curl -fsS -X POST -d \"$ZDD_APP $ZDD_TAG: $ZDD_OUTCOME\" \"$CHAT_WEBHOOK_URL\"",
        "echo": "$ZDD_ACTION $ZDD_TAG: $ZDD_OUTCOME"},
}


def sample_text(name: str) -> str:
    return _SAMPLE.format(name=name, **_SAMPLES[name])


def write_samples(directory: Path, *, force: bool = False) -> list[Path]:
    """Write `.zdd/hooks/<name>.sample` (executable, harmless) under `directory`; an existing
    sample is left alone unless `force`. Real hooks are never touched. Returns what was written."""
    where = directory / HOOKS_DIR
    where.mkdir(parents=True, exist_ok=True)
    written = []
    for name in HOOK_NAMES:
        path = where / f"{name}.sample"
        if path.exists() and not force:
            continue
        tmp = where / f".{name}.sample.tmp"
        tmp.write_text(sample_text(name))
        tmp.chmod(0o755)
        os.replace(tmp, path)
        written.append(path)
    return written
