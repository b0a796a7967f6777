"""Hooks in `.zdd/hooks/`: run in order with the operation's ZDD_* variables and none of the
credentials; a failing pre-deploy refuses the rollout before anything changes (no lock, no
journal, no host touched); a failing post-deploy is a warning and the rollout stands; a pre-build
failure stops `zdd-tui build` before the Docker engine is asked. The rollouts run on the engine
tests' fake world (tests/rollout/fakes.py) through a real Project."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from rollout.fakes import FakeClock, World, fake_project

from zdd_tui.config import Config
from zdd_tui.events import LogLine
from zdd_tui.project.hooks import HOOK_NAMES, HookFailed, hook_env, sample_text, write_samples
from zdd_tui.rollout.events import OutcomeStatus
from zdd_tui.rollout.journal import JOURNAL_FILE
from zdd_tui.rollout.lock import LOCK_FILE

# Writes its name to `order` and its whole environment and working directory to `<name>.env`.
RECORDER = """#!/bin/sh
echo "$(basename "$0")" >> order
env > "$(basename "$0").env"
pwd >> "$(basename "$0").env"
echo "hello from $(basename "$0")"
"""
CREDENTIALS = {"DIGITALOCEAN_TOKEN": "dop_v1_topsecret", "ZDD_SSH_PRIVATE_KEY": "-----BEGIN KEY-----",
               "ZDD_SECRET_DB_PASSWORD": "hunter2", "DIGITALOCEAN_ACCESS_TOKEN": "doctl-token"}


def hook(root: Path, name: str, text: str = RECORDER, executable: bool = True) -> Path:
    path = root / ".zdd" / "hooks" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755 if executable else 0o644)
    return path


def env_of(root: Path, name: str) -> dict[str, str]:
    lines = (root / f"{name}.env").read_text().splitlines()
    out = dict(line.split("=", 1) for line in lines[:-1] if "=" in line)
    out["(cwd)"] = lines[-1]
    return out


@pytest.fixture
def project_dir(tmp_path, monkeypatch):
    for k, v in CREDENTIALS.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("ZDD_PREVIOUS", "stale-from-the-parent")  # must not leak into a hook
    return tmp_path


def world_and_project(root: Path):
    world = World(FakeClock(), names=("app-1", "app-2"))
    world.add_version("sha-bbbbbbb")
    project = fake_project(world, Config(path=root / "zdd.yaml"), lag=0.0)
    return world, project


def lock_and_journal(world) -> list[str]:
    return [f"{n}:{f}" for n, h in world.hosts.items() for f in h.files if f in (LOCK_FILE, JOURNAL_FILE)]


async def test_deploy_hooks_run_in_order_with_the_right_variables_and_no_credentials(project_dir):
    hook(project_dir, "pre-deploy")
    hook(project_dir, "post-deploy")
    world, project = world_and_project(project_dir)
    seen: list = []
    at_pre_deploy: dict = {}

    def listener(ev):
        seen.append(ev)
        if isinstance(ev, LogLine) and ev.line == "hook pre-deploy: running":
            at_pre_deploy["ops"] = [op for _, _, op in world.log if not op.startswith(("lb-", "request"))]
            at_pre_deploy["files"] = lock_and_journal(world)

    plan = await world.clock.run(project.plan("deploy", "sha-bbbbbbb"))
    outcome = await world.clock.run(project.run(plan, [listener]))
    assert outcome.status is OutcomeStatus.SUCCESS
    assert set(world.tags().values()) == {"sha-bbbbbbb"}
    assert (project_dir / "order").read_text().split() == ["pre-deploy", "post-deploy"]
    # The pre-deploy hook ran before the lock was taken and before any host was touched.
    assert at_pre_deploy == {"ops": [], "files": []}

    pre, post = env_of(project_dir, "pre-deploy"), env_of(project_dir, "post-deploy")
    expected = {"ZDD_APP": project.config.app, "ZDD_ACTION": "deploy", "ZDD_TAG": "sha-bbbbbbb",
                "ZDD_HOSTS": "app-1,app-2", "ZDD_ROLLOUT_ID": plan.rollout_id, "ZDD_STRATEGY": plan.strategy,
                "ZDD_PREVIOUS": "sha-aaaaaaa", "ZDD_IMAGE": plan.image_ref, "(cwd)": str(project_dir)}
    assert {k: pre.get(k) for k in expected} == expected
    assert {k: post.get(k) for k in expected} == expected
    assert "ZDD_OUTCOME" not in pre and post["ZDD_OUTCOME"] == "success"
    assert "@" in pre["ZDD_PERFORMER"] and post["ZDD_RUNTIME"].isdigit()
    for env in (pre, post):
        assert not set(CREDENTIALS) & set(env)
        assert not any(v in "\n".join(env.values()) for v in CREDENTIALS.values())
        assert "PATH" in env  # the rest of the environment is kept
    # The hooks' output is shown, as lines about no host.
    lines = [ev.line for ev in seen if isinstance(ev, LogLine) and ev.host is None]
    assert "hook pre-deploy: hello from pre-deploy" in lines and "hook post-deploy: hello from post-deploy" in lines


async def test_a_failing_pre_deploy_refuses_and_changes_nothing(project_dir):
    hook(project_dir, "pre-deploy", "#!/bin/sh\necho checking\necho 'migrations pending \x1b]0;pwned\x07'\nexit 3\n")
    hook(project_dir, "post-deploy")
    world, project = world_and_project(project_dir)
    before = world.tags()
    plan = await world.clock.run(project.plan("rollback", "sha-bbbbbbb"))
    with pytest.raises(HookFailed) as err:
        await world.clock.run(project.run(plan))
    assert err.value.exit_code == 4
    text = str(err.value)
    assert "hook .zdd/hooks/pre-deploy failed (exit 3); nothing was changed" in text
    assert "  | checking\n  | migrations pending ^[]0;pwned^G" in text  # its last lines, shown not obeyed
    assert world.tags() == before
    assert [op for _, _, op in world.log if not op.startswith(("lb-", "request"))] == []
    assert lock_and_journal(world) == []
    assert not (project_dir / "order").exists()  # post-deploy did not run either


async def test_a_failing_post_deploy_is_reported_and_the_deploy_stands(project_dir):
    hook(project_dir, "post-deploy", "#!/bin/sh\necho 'could not tell the chat'\nexit 1\n")
    world, project = world_and_project(project_dir)
    seen: list = []
    plan = await world.clock.run(project.plan("deploy", "sha-bbbbbbb"))
    outcome = await world.clock.run(project.run(plan, [seen.append]))
    assert outcome.status is OutcomeStatus.SUCCESS
    assert set(world.tags().values()) == {"sha-bbbbbbb"}
    warnings = [ev.line for ev in seen if isinstance(ev, LogLine) and ev.level == "warning"]
    assert len(warnings) >= 1 and "hook post-deploy: FAILED (exit 1)" in warnings[-1]
    assert "could not tell the chat" in warnings[-1] and "the rollout stands as it ended" in warnings[-1]
    assert not any(LOCK_FILE in h.files for h in world.hosts.values())


async def test_post_deploy_hears_of_a_refused_rollout(project_dir):
    hook(project_dir, "post-deploy")
    world, project = world_and_project(project_dir)
    world.hosts["app-1"].files[LOCK_FILE] = (
        '{"holder":"ci@elsewhere","pid":7,"started":1.0,"version":"sha-x","rollout_id":"r0"}')
    plan = await world.clock.run(project.plan("deploy", "sha-bbbbbbb"))
    with pytest.raises(HookFailed.__mro__[1]):  # RefusedError: the lock is held
        await world.clock.run(project.run(plan))
    assert env_of(project_dir, "post-deploy")["ZDD_OUTCOME"] == "refused"
    assert set(world.tags().values()) == {"sha-aaaaaaa"}


async def test_a_hook_that_is_not_executable_is_refused_with_what_to_do(project_dir):
    hook(project_dir, "pre-deploy", executable=False)
    world, project = world_and_project(project_dir)
    plan = await world.clock.run(project.plan("deploy", "sha-bbbbbbb"))
    with pytest.raises(HookFailed) as err:
        await world.clock.run(project.run(plan))
    assert "not executable" in str(err.value) and "chmod +x .zdd/hooks/pre-deploy" in str(err.value)
    assert set(world.tags().values()) == {"sha-aaaaaaa"} and lock_and_journal(world) == []


def test_init_writes_samples_that_are_executable_and_harmless(project_dir):
    written = write_samples(project_dir)
    assert sorted(p.name for p in written) == sorted(f"{n}.sample" for n in HOOK_NAMES)
    for p in written:
        assert os.access(p, os.X_OK) and p.read_text() == sample_text(p.name.removesuffix(".sample"))
        out = subprocess.run([str(p)], capture_output=True, text=True, env=hook_env({"ZDD_TAG": "sha-1"}), check=True)
        assert out.stdout.startswith(p.name.removesuffix(".sample") + ":")


async def test_samples_never_run(project_dir):
    write_samples(project_dir)
    (project_dir / ".zdd/hooks/pre-deploy.sample").write_text("#!/bin/sh\nexit 1\n")
    assert write_samples(project_dir) == []  # an existing sample is left alone
    world, project = world_and_project(project_dir)
    plan = await world.clock.run(project.plan("deploy", "sha-bbbbbbb"))
    outcome = await world.clock.run(project.run(plan))
    assert outcome.status is OutcomeStatus.SUCCESS  # a .sample is not a hook


def test_a_failing_pre_build_stops_the_build_before_docker(project_dir, monkeypatch):
    from zdd_tui.cli import main
    from zdd_tui.commands.init import project_config, render

    repo = project_dir / "app"
    repo.mkdir()
    (repo / "zdd.yaml").write_text(render(project_config(repo)))
    subprocess.run(["git", "init", "-q", "."], cwd=repo, check=True)
    hook(repo, "pre-build", RECORDER + "echo 'tests failed'\nexit 1\n")
    (repo / ".gitignore").write_text(".zdd/\norder\n*.env\n")
    subprocess.run(["git", "add", ".gitignore", "zdd.yaml"], cwd=repo, check=True)
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "y"], cwd=repo,
                   check=True)
    sha = subprocess.run(["git", "rev-parse", "--short=7", "HEAD"], cwd=repo, capture_output=True, text=True,
                         check=True).stdout.strip()
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:9")  # a build that got this far would fail differently
    rc = main(["build", "--config", str(repo / "zdd.yaml")])
    assert rc == 4
    env = env_of(repo, "pre-build")
    assert env["ZDD_ACTION"] == "build" and env["ZDD_TAG"] == f"sha-{sha}" and env["(cwd)"] == str(repo)
    assert not set(CREDENTIALS) & set(env)


def test_the_refusal_reaches_the_operator_with_exit_4(tmp_path):
    """As a process: the error names the hook and quotes it, on stderr."""
    code = (
        "import asyncio, sys\n"
        "from zdd_tui.project.hooks import before_build\n"
        "from zdd_tui.config import Config\n"
        "from pathlib import Path\n"
        "from zdd_tui.cli import _say\n"
        "from zdd_tui.errors import ZddError\n"
        "try:\n"
        f"    asyncio.run(before_build(Config(path=Path({str(tmp_path / 'zdd.yaml')!r})), 'sha-1'))\n"
        "except ZddError as e:\n"
        "    _say(str(e)); sys.exit(e.exit_code)\n")
    hook(tmp_path, "pre-build", "#!/bin/sh\necho '::add-mask::oops'\nexit 2\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "GITHUB_ACTIONS": "true"})
    assert out.returncode == 4, out.stderr
    assert "hook .zdd/hooks/pre-build failed (exit 2); nothing was built" in out.stderr
    # The hook's line is quoted behind a bar, so Actions never takes it for a workflow command.
    assert "\n  | ::add-mask::oops\n" in out.stderr
    assert not any(line.lstrip().startswith("::") for line in out.stderr.splitlines())


async def test_a_hook_s_long_and_unterminated_lines_are_shown(project_dir):
    from zdd_tui.project.hooks import MAX_LINE, run_hook

    hook(project_dir, "pre-deploy", "#!/bin/sh\nprintf '%0200000d\\n' 7\nprintf 'no newline'\n")
    seen: list = []
    run = await run_hook(Config(path=project_dir / "zdd.yaml"), "pre-deploy", {}, seen.append)
    assert run is not None and run.ok
    lines = [ev.line.removeprefix("hook pre-deploy: ") for ev in seen]
    assert lines[1].startswith("0" * 100) and len(lines[1]) <= MAX_LINE + 10 and lines[1].endswith(" [...]")
    assert lines[2:] == ["no newline", lines[-1]] and lines[-1].startswith("exited 0")  # the rest of it cut
