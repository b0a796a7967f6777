"""Fixtures for the sandbox tests: an in-process sandbox with a fast LB health check."""

from __future__ import annotations

import asyncio
import time

import pytest

from zdd_tui.cloud.models import Droplet
from zdd_tui.config import load_config
from zdd_tui.sandbox.supervisor import Sandbox, SandboxOptions


@pytest.fixture
async def sandbox(tmp_path):
    sb = Sandbox(
        SandboxOptions(
            state_dir=tmp_path / "sb", hosts=2, lb_interval=1, lb_timeout=1, lb_unhealthy=2, lb_healthy=2,
            stop_grace_seconds=5,
        )
    )
    await sb.start()
    try:
        yield sb
    finally:
        pids = sb.pids()
        await sb.stop()
        from zdd_tui.sandbox.hosts import pid_alive

        assert not [p for p in pids if pid_alive(p)], "a host process outlived the sandbox"


@pytest.fixture
def config(sandbox):
    return load_config(sandbox.config_path)


def droplet_of(sb: Sandbox, name: str) -> Droplet:
    d = next(d for d in sb.api.state.droplets() if d["name"] == name)
    ip = d["networks"]["v4"][0]["ip_address"]
    return Droplet(id=d["id"], name=name, status=d["status"], region="nyc3", size="s-1vcpu-1gb",
                   public_ipv4=ip, private_ipv4=None, tags=tuple(d["tags"]))


async def wait_until(pred, timeout=15.0, interval=0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(interval)
