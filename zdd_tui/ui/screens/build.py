"""`b`: build the image, tag latest and sha-<git sha>, push; progress from zdd_tui.images.

The same builder as `zdd-tui build --push` (zdd_tui.images.build.ImageBuilder through the Docker
Engine API), fed by the source: `source.image_builder()` and `source.push_credentials()` (short-
lived read-write registry credentials). The flow, all in exclusive workers of group "build" so
the UI never waits on git, the engine or the registry:

  plan (git HEAD, dirty state, tags; the Docker engine is reached before anything is asked)
  -> confirmation (a dirty tree needs an explicit "build dirty", tagged sha-<sha>-dirty)
  -> the project's pre-build hook, as `zdd-tui build` runs it (zdd_tui.project.build.build_image:
     its failure builds nothing and is shown with its last lines)
  -> build output and a row per layer while pushing -> the digests, or the error and its fix.

The sandbox's registry holds prebuilt versions and the sandbox has no Docker engine: the screen
says so and builds nothing.
"""

from __future__ import annotations

import asyncio
import os
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Label, RichLog, Static

from zdd_tui.events import LogLine
from zdd_tui.images.events import BuildFinished, BuildOutput, BuildStarted, LayerProgress, PushFinished
from zdd_tui.text import visible
from zdd_tui.ui.messages import Emitted, Relay
from zdd_tui.ui.state import human_size
from zdd_tui.ui.widgets import KeyFooter, TopBar, theme_style

if TYPE_CHECKING:
    from zdd_tui.project.build import GitState, ImageBuilder
    from zdd_tui.ui.app import ZddApp

DONE_STATUSES = ("Pushed", "Layer already exists", "Mounted from")


class BuildScreen(Screen):
    app: ZddApp  # Textual's property, typed as this console's app

    BINDINGS = [
        Binding("escape", "close", "Back", id="build-back"),
        Binding("b", "start", "Build+push", id="build-start"),
    ]

    def __init__(self, sandbox: bool = False):
        super().__init__(id="build")
        self.sandbox = sandbox
        # What the tests (and a reader) can check: planning | ready | confirm | cancelled | building |
        # pushing | done | failed | no-engine | sandbox | unavailable
        self.phase = "planning"
        self.error: str | None = None
        self.built: Any = None  # the BuildResult (the project layer does not name its type)
        self.pushed: Any = None  # the PushResult
        self._builder: ImageBuilder | None = None
        self._git: GitState | None = None
        self._tags: tuple[str, ...] = ()
        self._layers: dict[str, str] = {}  # layer id -> last status
        self._relay = Relay(self)

    def compose(self) -> ComposeResult:
        yield TopBar("zdd-tui · build and push", getattr(self.app.source, "label", ""), self.sandbox)
        yield Static("Reading the project's git state…", id="build-plan")
        yield Static("", id="build-status")
        yield Label("Layers (push)", classes="pane-title")
        table: DataTable[str] = DataTable(id="build-layers", cursor_type="none", zebra_stripes=False)
        table.add_column("Layer", key="layer")
        table.add_column("Tag", key="tag")
        table.add_column("Status", key="status")
        table.add_column("Progress", key="progress")
        yield table
        yield Label("Build output", classes="pane-title")
        yield RichLog(id="build-log", wrap=True, markup=False, max_lines=2000)
        yield KeyFooter()

    def on_mount(self) -> None:
        self.prepare()

    def on_unmount(self) -> None:
        if self._builder is not None:
            self._builder.close()

    # -- plan ----------------------------------------------------------------------------------
    def _prebuilt_only(self, source) -> bool:
        """The sandbox's own registry: prebuilt sample versions, nothing to build or push to."""
        if not (self.sandbox or getattr(source, "sandbox", False)):
            return False
        from zdd_tui.project.build import prebuilt_only

        config = getattr(source, "config", None)
        return (config is not None and prebuilt_only(config)) or not hasattr(source, "image_builder")

    @work(exclusive=True, group="build", exit_on_error=False)
    async def prepare(self) -> None:
        from zdd_tui.errors import ZddError
        from zdd_tui.project.build import git_state

        source = self.app.source
        if source is not None and self._prebuilt_only(source):
            self._show_sandbox(source)
            return
        if source is None or not hasattr(source, "image_builder"):
            self.phase = "unavailable"
            where = getattr(source, "label", None) or "no fleet connected"
            self._status(f"Build and push is not available here ({where}): there is no registry to push to. "
                         "Connect DigitalOcean (s: setup) first.", "warning")
            self.query_one("#build-plan", Static).update("")
            return
        builder = self._builder
        if builder is None:
            builder = self._builder = source.image_builder()
        try:
            git = await asyncio.to_thread(git_state, builder.project_dir)
        except ZddError as exc:
            self._fail(exc.message, exc.hint)
            return
        _, tags = builder.plan(allow_dirty=True, git=git)  # the refusal of a dirty tree is the dialog's
        self._git, self._tags = git, tags
        self.query_one("#build-plan", Static).update(self._plan_text(builder, git, tags))
        # Reach the engine before asking anything: a plan that cannot run is not offered.
        try:
            await asyncio.to_thread(lambda: builder.api)
        except ZddError as exc:
            self._no_engine(exc)
            return
        except ImportError as exc:
            self._fail(f"the docker Python package is missing ({exc})", "pip install docker")
            return
        self.phase = "ready"
        self.action_start()

    def _plan_text(self, builder, git, tags) -> Text:
        config = builder.config
        t = Text()
        t.append("Image       ", style="bold")
        t.append(f"{builder.repo}\n")
        t.append("Tags        ", style="bold")
        t.append(", ".join(tags) + "\n")
        t.append("Commit      ", style="bold")
        t.append(f"{git.sha} in {builder.project_dir}  ")
        if git.dirty:
            warning = theme_style(self.app, "warning", bold=True)
            t.append(f"⚠ dirty: {len(git.changed)} uncommitted change(s)\n", style=warning)
            muted = theme_style(self.app, "foreground-muted")
            for line in git.changed[:6]:
                t.append(f"              {visible(line.strip())}\n", style=muted)
            if len(git.changed) > 6:
                t.append(f"              … and {len(git.changed) - 6} more\n", style=muted)
        else:
            t.append("✔ clean\n", style=theme_style(self.app, "success"))
        t.append("Dockerfile  ", style="bold")
        t.append(f"{config.build.dockerfile} (context {config.build.context})\n")
        if config.build.args:
            t.append("Build args  ", style="bold")
            t.append(", ".join(sorted(config.build.args)) + "\n")
        t.append("Engine      ", style="bold")
        t.append(f"{self._engine_where(builder)}\n")
        t.append("Push        ", style="bold")
        t.append(f"registry {config.registry.name}, short-lived read-write credentials (sha tag first, then latest)")
        return t

    @staticmethod
    def _engine_where(builder) -> str:
        return builder.docker_host or os.environ.get("DOCKER_HOST") or "the local Docker socket (DOCKER_HOST unset)"

    # -- confirm -------------------------------------------------------------------------------
    def action_start(self) -> None:
        """Ask to build and push the planned tags (again after a cancel or a failure)."""
        if self.phase in ("building", "pushing", "sandbox", "unavailable", "planning"):
            return
        git, tags, builder = self._git, self._tags, self._builder
        if git is None or builder is None or self.phase == "no-engine":
            self.phase = "planning"
            self.prepare()
            return
        from zdd_tui.ui.screens.confirm import ConfirmScreen

        body = Text()
        body.append(f"Build {builder.repo} at commit {git.sha} and push it as:\n")
        for tag in tags:
            body.append(f"  {builder.repo}:{tag}\n")
        if git.dirty:
            body.append(
                f"\n⚠ The working tree has {len(git.changed)} uncommitted change(s): the image would not match "
                f"commit {git.sha}, so it is tagged {tags[1]}. Commit first to get a clean sha tag.\n",
                style=theme_style(self.app, "warning", bold=True),
            )
        body.append("\nThe registry's latest tag moves to this build; no host is changed until you deploy.")
        title = f"Build and push {tags[1]}?"
        yes = "Build dirty and push" if git.dirty else "Build and push"
        self.phase = "confirm"

        def answer(yes_: bool | None) -> None:
            if yes_:
                self.run_build(git.dirty)
            else:
                self.phase = "cancelled"
                self._status("Cancelled: nothing was built or pushed. b asks again, Esc goes back.", "foreground-muted")

        self.app.push_screen(ConfirmScreen(title, body, yes=yes, no="Cancel", danger=git.dirty), answer)

    # -- build and push ------------------------------------------------------------------------
    @work(exclusive=True, group="build", exit_on_error=False)
    async def run_build(self, allow_dirty: bool) -> None:
        from zdd_tui.errors import ZddError
        from zdd_tui.project.build import build_image, git_state

        source, builder, planned = self.app.source, self._builder, self._git
        self.error = None
        self.built = self.pushed = None
        self._layers.clear()
        self.query_one("#build-layers", DataTable).clear()
        try:
            # action_start asks only with a plan made; the app's source, once open, stays.
            assert source is not None and builder is not None and planned is not None
            git = await asyncio.to_thread(git_state, builder.project_dir)
            if (git.sha, git.dirty) != (planned.sha, planned.dirty):
                self._git = None  # plan again
                raise ZddError(
                    f"the project changed since the plan (commit {planned.sha}{' dirty' if planned.dirty else ''} -> "
                    f"{git.sha}{' dirty' if git.dirty else ''}); nothing was built",
                    "press b to plan again",
                )
            self.phase = "building"
            self._status("Building…", "accent")
            self.built = await build_image(builder.config, builder, allow_dirty=allow_dirty, git=git,
                                           on_event=self._relay)
            self.phase = "pushing"
            self._status(f"Built {_short(self.built.image_id)}; getting short-lived push credentials for registry "
                         f"{builder.config.registry.name}…", "accent")
            creds = await source.push_credentials()
            self._status("Pushing…", "accent")
            self.pushed = await builder.push(self.built, creds, on_event=self._relay)
        except ZddError as exc:
            self._relay.after(self._fail, exc.message, exc.hint)
            return
        except Exception as exc:  # noqa: BLE001 - an unexpected failure is still shown, never swallowed
            self._relay.after(self._fail, visible(f"{type(exc).__name__}: {exc}", newlines=True), None)
            return
        await asyncio.sleep(0)  # let the last events (queued from the SDK's thread) arrive first
        self._relay.after(self._pushed)

    def _pushed(self) -> None:
        self.phase = "done"
        t = Text("✔ Pushed\n", style=theme_style(self.app, "success", bold=True))
        for ref in sorted(self.pushed.digests, key=lambda r: r.endswith(":latest")):
            t.append(f"  {ref}  {self.pushed.digests[ref]}\n")
        t.append("Deploy it from the dashboard: Esc, then d.", style=theme_style(self.app, "foreground-muted"))
        self.query_one("#build-status", Static).update(t)
        self.query_one(RichLog).write(f"✔ pushed {', '.join(self.pushed.refs)}")
        self._git = None  # another b plans again (a new commit, a new tag)
        poller = getattr(self.app, "poller", None)
        if poller:
            poller.poke("tags")

    @on(Emitted)
    def _events(self, message: Emitted) -> None:
        log = self.query_one(RichLog)
        for ev in message.events:
            if isinstance(ev, BuildStarted):
                log.write(f"▶ building {', '.join(ev.tags)} from {ev.context} ({ev.dockerfile})")
            elif isinstance(ev, BuildOutput):
                log.write(ev.line)
            elif isinstance(ev, BuildFinished):
                log.write(f"✔ built {ev.image_id}")
            elif isinstance(ev, LayerProgress):
                self._layer(ev)
            elif isinstance(ev, PushFinished):
                log.write(f"✔ pushed {ev.ref} {ev.digest}")
            elif isinstance(ev, LogLine):  # the pre-build hook's words (made visible by the hook runner)
                log.write(ev.line)

    def _layer(self, ev: LayerProgress) -> None:
        table = self.query_one("#build-layers", DataTable)
        done = ev.status.startswith(DONE_STATUSES)
        if done:
            progress = "██████████ done ✔"
        elif ev.current is not None and ev.total:
            frac = max(0.0, min(1.0, ev.current / ev.total))
            filled = int(frac * 10)
            bar = f"{'█' * filled}{'░' * (10 - filled)}"
            progress = f"{bar} {frac:4.0%} {human_size(ev.current)}/{human_size(ev.total)}"
        else:
            progress = "░" * 10 + " waiting"
        # Text cells: a str cell is markup to DataTable, and the status is the engine's words.
        row = (Text(ev.layer), Text(ev.tag), Text(ev.status), Text(progress))
        if ev.layer not in self._layers:
            table.add_row(*row, key=ev.layer)
        else:
            for col, value in zip(("tag", "status", "progress"), row[1:], strict=True):
                table.update_cell(ev.layer, col, value, update_width=True)
        self._layers[ev.layer] = ev.status

    # -- outcomes ------------------------------------------------------------------------------
    def _status(self, text: str, var: str) -> None:
        self.query_one("#build-status", Static).update(Text(text, style=theme_style(self.app, var, bold=True)))

    def _fail(self, message: str, hint: str | None) -> None:
        self.phase = "failed"
        self.error = message
        t = Text(f"✖ Build and push failed: {message}\n", style=theme_style(self.app, "error", bold=True))
        if hint:
            t.append(f"  How to fix: {hint}\n")
        t.append("  b tries again, Esc goes back.", style=theme_style(self.app, "foreground-muted"))
        self.query_one("#build-status", Static).update(t)
        self.query_one(RichLog).write(f"✖ {message}")

    def _no_engine(self, exc) -> None:
        self.phase = "no-engine"
        self.error = exc.message
        where = self._engine_where(self._builder)
        t = Text("✖ No Docker engine reachable: nothing was built or pushed.\n",
                 style=theme_style(self.app, "error", bold=True))
        t.append(f"  {exc.message}\n")
        t.append(
            f"  Tried: {where}.\n"
            "  How to fix: start Docker on this machine, or point DOCKER_HOST at a running engine\n"
            "  (unix:///var/run/docker.sock, ssh://user@build-host, or tcp://host:2376 with DOCKER_TLS_VERIFY=1\n"
            "  and DOCKER_CERT_PATH), then start zdd-tui again. Headless: zdd-tui build --push --docker-host URL."
        )
        self.query_one("#build-status", Static).update(t)

    def _show_sandbox(self, source) -> None:
        self.phase = "sandbox"
        config = source.config
        tags = [t.tag for t in (getattr(self.app.fleet, "tags", None) or [])]
        t = Text("This is the sandbox: nothing is built or pushed here.\n\n",
                 style=theme_style(self.app, "sandbox-label", bold=True))
        t.append(f"The sandbox's registry ({config.image_repo}) holds prebuilt versions of the sample service")
        t.append(f": {', '.join(tags)}" if tags else "")
        t.append(".\nDeploy or roll back to one of them from the dashboard (Esc, then d or r).\n\n")
        t.append(
            "Building and pushing a new image needs a Docker engine (DOCKER_HOST, or Docker running locally)\n"
            "and a real registry: connect DigitalOcean (s: setup, or zdd-tui init) and press b there,\n"
            "or run `zdd-tui build --push` headless."
        )
        self.query_one("#build-plan", Static).update(t)
        self.query_one("#build-status", Static).update("")

    def action_close(self) -> None:
        self.app.pop_screen()


def _short(image_id: str) -> str:
    return image_id.split(":", 1)[-1][:12]
