"""Fixtures for the console tests: a real in-process sandbox (API, LB, hosts) and a source on it."""

from __future__ import annotations

import asyncio
import os
import time

import pytest


@pytest.fixture(autouse=True)
def _isolated_xdg(tmp_path, monkeypatch):
    # The user's own config/themes must never change what a test sees.
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.delenv("NO_COLOR", raising=False)


@pytest.fixture
async def sandbox(tmp_path):
    """A fast sandbox: LB checks every 1 s, 2 healthy/2 unhealthy, so a host rolls in seconds."""
    from zdd_tui.sandbox.supervisor import Sandbox, SandboxOptions

    sb = Sandbox(
        SandboxOptions(
            state_dir=tmp_path / "sandbox",
            hosts=2,
            lb_interval=1,
            lb_timeout=1,
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


@pytest.fixture
async def source(sandbox):
    from zdd_tui.sandbox.supervisor import load_sandbox_config
    from zdd_tui.ui.source import SessionSource, open_session

    config = load_sandbox_config(sandbox.config_path)
    session = await open_session(config)
    src = SessionSource(session, sandbox=True, label="sandbox (test)")
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
