"""Application secrets and the release command, end to end in an in-process sandbox (lb-drain).

A secret set in the keyring (the in-memory test backend) and one given as ZDD_SECRET_<NAME>
reach the service process's environment (read from /proc/PID/environ); their values appear in
no file under the project and sandbox directories, in no process's argv sampled during the
deploy, in no event. The release command runs once, before the first host changes, with its
output shown; a failing one refuses the deploy (exit 4) and the fleet is exactly as before.
"""

from __future__ import annotations

import asyncio
import os
import secrets as random
import threading
from pathlib import Path

import pytest
import yaml

from zdd_tui import secrets
from zdd_tui.config import load_config
from zdd_tui.errors import EXIT_REFUSED, EXIT_USAGE, UsageError
from zdd_tui.events import LogLine
from zdd_tui.project import Project
from zdd_tui.project.rollout import exit_code_for
from zdd_tui.rollout.events import OutcomeStatus, Phase, PhaseChanged

pytestmark = pytest.mark.slow

CHANGES = {Phase.DRAINING, Phase.WAITING_LB_OUT, Phase.STOPPING, Phase.STARTING}


def _project_config(sandbox, tmp_path: Path, **extra) -> Path:
    doc = yaml.safe_load(Path(sandbox.config_path).read_text())
    for section, values in extra.items():
        doc[section] = {**(doc.get(section) or {}), **values}
    doc["deploy"] = {**doc.get("deploy", {}), "start_timeout_seconds": 20, "margin_seconds": 2}
    path = tmp_path / "project" / "zdd.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(yaml.safe_dump(doc))
    return path


def _other_ok_tag(sandbox) -> str:
    running = {h["tag"] for h in sandbox.info["hosts"]}
    return next(t["tag"] for t in sandbox.info["tags"]
                if t["behaviour"] == "ok" and t["tag"].startswith("sha-") and t["tag"] not in running)


class ArgvSampler:
    """Reads every process's argv (/proc/*/cmdline) until stopped; keeps those holding a needle."""

    def __init__(self, needles: list[str]):
        self.needles = [n.encode() for n in needles]
        self.hits: list[str] = []
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for entry in os.scandir("/proc"):
                if not entry.name.isdigit():
                    continue
                try:
                    with open(f"/proc/{entry.name}/cmdline", "rb") as f:
                        argv = f.read()
                except OSError:
                    continue
                if any(n in argv for n in self.needles):
                    self.hits.append(argv.replace(b"\0", b" ").decode(errors="replace"))
            self.samples += 1
            self._stop.wait(0.01)

    def __enter__(self) -> ArgvSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)


def _files_holding(root: Path, needles: list[str]) -> list[str]:
    found = []
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            try:
                data = path.read_bytes()
            except OSError:
                continue
            found += [f"{path}: {n[:4]}..." for n in needles if n.encode() in data]
    return found


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(x.decode().split("=", 1) for x in raw if b"=" in x)


def _fleet(sandbox) -> dict[str, tuple[str | None, list[int]]]:
    return {n: ((h.inspect() or {}).get("tag"), h.pids()) for n, h in sandbox.hosts.hosts.items()}


def _state_files(sandbox) -> dict[str, dict[str, str]]:
    return {n: {f: h.state_read(f) or "" for f in h.state_list()} for n, h in sandbox.hosts.hosts.items()}


async def test_secrets_reach_the_container_and_nowhere_else(sandbox, tmp_path, memkeyring, monkeypatch):
    keyring_value = "kr-" + random.token_hex(12)
    env_value = "env-" + random.token_hex(12)
    migrations = tmp_path / "migrations.log"
    path = _project_config(
        sandbox, tmp_path,
        service={"secrets": ["DB_PASSWORD", "SIGNING_KEY"],
                 "env": {"ZDD_GRACE_SECONDS": "5", "ZDD_MIGRATIONS_FILE": str(migrations)}},
        deploy={"release_command": ["python", "-m", "zdd_service", "migrate"]})
    config = load_config(path)
    secrets.set_app_secret(config.context, "DB_PASSWORD", keyring_value)
    monkeypatch.setenv("ZDD_SECRET_SIGNING_KEY", env_value)
    tag = _other_ok_tag(sandbox)
    events: list = []
    needles = [keyring_value, env_value]
    with ArgvSampler(needles) as sampler:
        async with await Project.open(config) as project:
            plan = await project.plan_deploy(tag)
            outcome = await project.run(plan, [events.append])
            status = await project.status()
    assert "containers get the secrets DB_PASSWORD, SIGNING_KEY (values never shown)" in plan.notes
    assert any(n.startswith("release command on app-1 before any host changes: python -m zdd_service migrate")
               for n in plan.notes)
    assert outcome.status == OutcomeStatus.SUCCESS, outcome.message
    assert sampler.samples > 10 and sampler.hits == []

    # In each service process's environment, with both values.
    for name, host in sandbox.hosts.hosts.items():
        (pid,) = host.pids()
        env = _environ(pid)
        assert env["DB_PASSWORD"] == keyring_value and env["SIGNING_KEY"] == env_value, name
        assert (host.inspect() or {}).get("tag") == tag

    # Nowhere on disk (sandbox state, journals, logs, container records, the project), nor in events.
    assert _files_holding(tmp_path, needles) == []
    shown = "\n".join(e.text() if hasattr(e, "text") else repr(e) for e in events) + repr(outcome)
    assert not any(n in shown for n in needles)

    # The release command ran once, with the new version, before any host changed; its output was shown.
    assert [line.split()[0] for line in migrations.read_text().splitlines()] == [tag]
    release_at = next(i for i, e in enumerate(events) if isinstance(e, LogLine) and "migrated to version" in e.line)
    first_change = next(i for i, e in enumerate(events) if isinstance(e, PhaseChanged) and e.phase in CHANGES)
    assert release_at < first_change

    # status: the names and fingerprints each container was started with, the same as now.
    for host in sandbox.hosts.hosts:
        rows = {r["name"]: r for r in status.secrets[host]}
        assert {n: r["state"] for n, r in rows.items()} == {"DB_PASSWORD": "same", "SIGNING_KEY": "same"}
        assert all(len(r["fingerprint"]) == 12 for r in rows.values())
    assert not any(n in str(status.to_dict()) for n in needles)

    # A value changed since the deploy shows as drift.
    secrets.set_app_secret(config.context, "DB_PASSWORD", keyring_value + "-rotated")
    async with await Project.open(config) as project:
        status = await project.status()
    for host in sandbox.hosts.hosts:
        rows = {r["name"]: r["state"] for r in status.secrets[host]}
        assert rows == {"DB_PASSWORD": "changed", "SIGNING_KEY": "same"}
    from zdd_tui.project.status import render_text

    assert "DB_PASSWORD" in render_text(status) and "CHANGED" in render_text(status)


async def test_missing_secrets_are_refused_before_anything_changes(sandbox, tmp_path, memkeyring, monkeypatch):
    monkeypatch.delenv("ZDD_SECRET_SIGNING_KEY", raising=False)
    path = _project_config(sandbox, tmp_path, service={"secrets": ["DB_PASSWORD", "SIGNING_KEY", "PRESENT"]})
    config = load_config(path)
    secrets.set_app_secret(config.context, "PRESENT", "here")
    tag = _other_ok_tag(sandbox)
    before, files = _fleet(sandbox), _state_files(sandbox)
    async with await Project.open(config) as project:
        with pytest.raises(UsageError) as err:
            await project.plan_deploy(tag)
    text = str(err.value)
    assert err.value.exit_code == EXIT_USAGE
    assert "DB_PASSWORD, SIGNING_KEY" in text and "PRESENT" not in text.split(";")[0]
    assert "zdd-tui secret set DB_PASSWORD" in text and "ZDD_SECRET_SIGNING_KEY" in text
    # A plan made before the secret went missing is refused at run time too, before the lock.
    plain = load_config(_project_config(sandbox, tmp_path, service={"secrets": []}))
    async with await Project.open(plain) as project:
        plan = await project.plan_deploy(tag)
    async with await Project.open(config) as project:
        with pytest.raises(UsageError):
            await project.run(plan)
    assert _fleet(sandbox) == before and _state_files(sandbox) == files


async def test_a_failing_release_command_refuses_the_deploy_and_changes_nothing(sandbox, tmp_path, memkeyring):
    path = _project_config(sandbox, tmp_path, deploy={"release_command": [
        "python", "-c", "import sys; print('applying 0007_orders'); print('relation orders exists'); sys.exit(3)"]})
    config = load_config(path)
    tag = _other_ok_tag(sandbox)
    before = _fleet(sandbox)
    events: list = []
    async with await Project.open(config) as project:
        plan = await project.plan_deploy(tag)
        outcome = await project.run(plan, [events.append])
    assert outcome.status == OutcomeStatus.REFUSED and exit_code_for(outcome) == EXIT_REFUSED
    assert "exited with 3" in outcome.message and "nothing was changed" in outcome.message
    assert "relation orders exists" in outcome.seen
    assert [e.line for e in events if isinstance(e, LogLine) and "release |" in e.line] == [
        "release | applying 0007_orders", "release | relation orders exists"]
    assert not any(isinstance(e, PhaseChanged) and e.phase in CHANGES for e in events)
    await asyncio.sleep(0.5)
    assert _fleet(sandbox) == before  # same tags, same processes
