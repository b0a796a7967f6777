"""A sandbox host's app container (lb-drain), as the engine relies on it: Docker's restart policy
"always" after a kill -9, a stop that sends SIGTERM and SIGKILLs after the grace, what inspect and
container.json say meanwhile, and a sandbox restart running the container again."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time

import httpx
import pytest

from zdd_tui.sandbox.hosts import HostManager, LocalHost, pid_alive
from zdd_tui.sandbox.images import make_image

from .conftest import wait_until

IMAGES = {"v1": make_image("v1"), "crash": make_image("crash", "crash")}
REPO = "registry.digitalocean.com/reg/app"


def lookup(repo: str, tag: str):
    return IMAGES.get(tag) if repo == REPO else None


@pytest.fixture
async def hosts(tmp_path):
    managers: list[HostManager] = []

    def open_hosts() -> HostManager:
        m = HostManager(tmp_path / "sb", lookup)
        managers.append(m)
        return m

    try:
        yield open_hosts
    finally:
        pids = [p for m in managers for p in m.pids()]
        for m in managers:
            await m.shutdown(None)
        assert not [p for p in pids if pid_alive(p)], "an app process outlived its host"


async def healthy(h: LocalHost) -> bool:
    try:
        async with httpx.AsyncClient() as c:
            r = await c.get(f"http://{h.address}:{h.service_port}/health", timeout=1.0)
    except httpx.HTTPError:
        return False
    return r.status_code == 200


def on_disk(h: LocalHost) -> dict:
    return json.loads((h.root / "container.json").read_text())


async def test_a_killed_app_is_restarted_and_counted(hosts):
    h = hosts().add("app-1", 1)
    await h.run(f"{REPO}:v1")
    await wait_until(lambda: healthy(h), timeout=15)
    first = h.inspect()
    assert first is not None and first["state"] == "running" and first["restart_count"] == 0
    assert h.pids() == [first["pid"]] and on_disk(h)["pid"] == first["pid"]

    os.kill(first["pid"], signal.SIGKILL)  # a process this test's host started
    again = await wait_until(lambda: (c := h.inspect()) and c["restart_count"] == 1 and c["state"] == "running"
                             and c)
    assert again["exit_code"] == -signal.SIGKILL and again["pid"] != first["pid"] and pid_alive(again["pid"])
    assert again["started_at"] > first["started_at"] and h.pids() == [again["pid"]]
    saved = on_disk(h)
    assert (saved["state"], saved["pid"], saved["restart_count"], saved["exit_code"]) == (
        "running", again["pid"], 1, -signal.SIGKILL)
    await wait_until(lambda: healthy(h), timeout=15)
    assert f"[sandbox] app exited with code {-signal.SIGKILL}; restarting" in h.logs(0)


async def test_a_crashing_app_restarts_with_a_doubling_backoff(hosts):
    h = hosts().add("app-1", 1)
    t0 = time.monotonic()
    await h.run(f"{REPO}:crash")
    c = await wait_until(lambda: (c := h.inspect()) and c["restart_count"] >= 3 and c, timeout=20)
    # Backoffs 0.25 + 0.5 s at least before the third exit (each start also takes its time).
    assert time.monotonic() - t0 >= 0.75
    assert c["exit_code"] == 3 and c["state"] in ("restarting", "running")
    assert sum("exited with code 3; restarting" in line for line in h.logs(0)) >= 3
    await h.stop(2)
    assert h.inspect() is None and h.pids() == [] and not (h.root / "container.json").exists()
    assert h.logs(1)[0].startswith("[sandbox] app stopped (exit code ")


async def test_stop_sends_sigterm_then_sigkill_after_the_grace(hosts):
    h = hosts().add("app-1", 1)
    # GET / answers after 20 s and the service drains for up to 30 s: only the SIGKILL ends it.
    await h.run(f"{REPO}:v1", {"ZDD_LATENCY_MS": "20000", "ZDD_GRACE_SECONDS": "30"})
    await wait_until(lambda: healthy(h), timeout=15)
    pid = h.pids()[0]

    async def slow_get() -> None:
        async with httpx.AsyncClient() as c:
            with pytest.raises(httpx.HTTPError):
                await c.get(f"http://{h.address}:{h.service_port}/", timeout=30)

    pending = asyncio.create_task(slow_get())
    await asyncio.sleep(0.5)  # the request is in flight
    t0 = time.monotonic()
    await h.stop(1.0)
    took = time.monotonic() - t0
    await pending
    assert 1.0 <= took < 5.0, took
    assert not pid_alive(pid) and h.inspect() is None and h.pids() == []
    lines = h.logs(0)
    assert any("draining" in line and "SIGTERM" in line for line in lines), lines  # SIGTERM came first
    assert lines[-1] == f"[sandbox] app stopped (exit code {-signal.SIGKILL})"

    await h.run(f"{REPO}:v1", {"ZDD_GRACE_SECONDS": "30"})  # nothing in flight: it ends at the SIGTERM
    await wait_until(lambda: healthy(h), timeout=15)
    t0 = time.monotonic()
    await h.stop(10.0)
    assert time.monotonic() - t0 < 5.0
    assert h.logs(1) == ["[sandbox] app stopped (exit code 0)"]


async def test_a_restarted_sandbox_runs_the_container_again_with_its_counts(hosts):
    m = hosts()
    h = m.add("app-1", 1)
    await h.run(f"{REPO}:v1")
    await wait_until(lambda: healthy(h), timeout=15)
    os.kill(h.pids()[0], signal.SIGKILL)
    await wait_until(lambda: (c := h.inspect()) and c["restart_count"] == 1 and c["state"] == "running")
    await wait_until(lambda: healthy(h), timeout=15)
    old_pid = h.pids()[0]

    await m.shutdown(3.0)  # the sandbox exits: the process ends, the record stays as it was
    assert not pid_alive(old_pid) and h.pids() == []
    saved = on_disk(h)
    assert (saved["state"], saved["pid"], saved["restart_count"], saved["exit_code"], saved["desired"]) == (
        "running", None, 1, -signal.SIGKILL, "running")

    again = hosts().add("app-1", 1)  # a new sandbox process on the same directory
    assert again.address == h.address
    await again.resume()
    c = again.inspect()
    assert c is not None and c["state"] == "running" and c["pid"] not in (None, old_pid)
    assert c["restart_count"] == 1 and c["exit_code"] == -signal.SIGKILL and c["tag"] == "v1"
    await wait_until(lambda: healthy(again), timeout=15)
    assert sum("listening" in line for line in again.logs(0)) == 3  # one log across the restarts

    await again.reboot()  # a power cycle: SIGKILLed and started again, no restart counted
    c2 = again.inspect()
    assert c2 is not None and c2["state"] == "running" and c2["pid"] != c["pid"] and c2["restart_count"] == 1
    assert "[sandbox] app host rebooted" in again.logs(0)
