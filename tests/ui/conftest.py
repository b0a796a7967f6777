"""Fixtures for the console tests: a real in-process sandbox (API, LB, hosts) and a source on it."""

from __future__ import annotations

import time

import pytest


@pytest.fixture(autouse=True)
def _isolated_xdg(tmp_path, monkeypatch):
    # The user's own config/themes must never change what a test sees.
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg-state"))  # a crash report of a test goes here
    monkeypatch.delenv("NO_COLOR", raising=False)


@pytest.fixture
async def sandbox(tmp_path):
    """A fast sandbox: DO's shortest LB check (3 s), 2 healthy/2 unhealthy: a host rolls in ~15 s."""
    from zdd_tui.sandbox.supervisor import Sandbox, SandboxOptions

    sb = Sandbox(
        SandboxOptions(
            state_dir=tmp_path / "sandbox",
            hosts=2,
            lb_interval=3,
            lb_timeout=3,
            lb_unhealthy=2,
            lb_healthy=2,
            stop_grace_seconds=3,
            host_shutdown_grace=3,
        )
    )
    await sb.start()
    try:
        yield sb
    finally:
        pids = sb.pids()
        await sb.stop()
        for pid in pids:  # every host process it started is gone (zombies count as gone)
            assert not _alive(pid), f"sandbox host process {pid} still running"


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False


def sandbox_config(sandbox):
    """The sandbox's zdd.yaml, loaded. The fast LB (1 s checks) is below DO's 3 s minimum, which
    zdd.yaml validation refuses; the engine reads the LB's real settings from the API anyway, so
    the file's copy is clamped to 3 s for loading only (a no-op at the 3 s the fixture uses)."""
    import yaml

    from zdd_tui.config import load_config

    doc = yaml.safe_load(sandbox.config_path.read_text())
    hc = doc.get("load_balancer", {}).get("health_check", {})
    for k in ("check_interval_seconds", "response_timeout_seconds"):
        if k in hc and int(hc[k]) < 3:
            hc[k] = 3
    # A broken version fails in 12 s rather than the default 60 s (the halted-outcome test).
    doc.setdefault("deploy", {})["start_timeout_seconds"] = 12
    path = sandbox.config_path.with_name("zdd-console-test.yaml")
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return load_config(path)


@pytest.fixture
async def source(sandbox):
    from zdd_tui.project import Project
    from zdd_tui.ui.source import FleetSource

    config = sandbox_config(sandbox)
    src = FleetSource(await Project.open(config), label="sandbox (test)")
    try:
        yield src
    finally:
        await src.close()


def tag_with(sandbox, behaviour: str) -> str:
    return next(t["tag"] for t in sandbox.info["tags"] if t["behaviour"] == behaviour and t["tag"] != "latest")


async def until(pilot, predicate, timeout: float = 30.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await pilot.pause(0.1)


def project_on(config, client):
    """A Project on an already open DO client (the test's own in-process API)."""
    from zdd_tui.cloud.adapter import DOCloud
    from zdd_tui.project import Project
    from zdd_tui.project.open import open_runtime

    return Project(config, client=client, cloud=DOCloud(client, config),
                   runtime_factory=lambda d: open_runtime(config, d, client=client))
