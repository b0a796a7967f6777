"""`SandboxRuntime.traffic()`: a sandbox host's real Traefik counts the requests sent through it,
per slot, the sample service's injected 500s among them; in flight per slot from one agent call;
None where no proxy runs."""

from __future__ import annotations

import math
import time

import httpx
import pytest

from zdd_tui.config import load_config
from zdd_tui.project.open import open_runtime
from zdd_tui.sandbox.hosts import pid_alive
from zdd_tui.sandbox.supervisor import Sandbox, SandboxOptions
from zdd_tui.traffic import INF, ProxyCounters, delta, quantile

from .conftest import droplet_of, wait_until

pytestmark = pytest.mark.slow

SENT = 200


@pytest.fixture
async def swap_host(tmp_path):
    sb = Sandbox(SandboxOptions(
        state_dir=tmp_path / "sb", hosts=1, strategy="local-swap", lb_interval=1, lb_timeout=1,
        lb_unhealthy=2, lb_healthy=2, stop_grace_seconds=5, host_shutdown_grace=5))
    await sb.start()
    rt = open_runtime(load_config(sb.config_path), droplet_of(sb, "app-1"))
    try:
        yield sb, rt
    finally:
        await rt.close()
        pids = sb.pids()
        await sb.stop()
        assert not [p for p in pids if pid_alive(p)], "a host process outlived the sandbox"


async def test_traffic_counts_the_requests_sent_through_a_sandbox_host(swap_host):
    sb, rt = swap_host
    first = await rt.traffic()
    assert isinstance(first, ProxyCounters)
    assert dict(first.in_flight) == {"a": 0, "b": 0}

    # The same version on slot b, answering a share of GET / with 500 (the sample service's
    # ZDD_ERROR_RATE), and the proxy switched to it.
    (a,) = await rt.slot_containers()
    await rt.run_slot("b", a.image_ref, {"ZDD_ERROR_RATE": "0.3"})

    async def healthy() -> bool:
        return (await rt.probe_slot("b")).healthy

    await wait_until(healthy, timeout=20)
    await rt.switch("b")

    before = await rt.traffic()
    assert before is not None
    t0 = time.monotonic()
    statuses: list[int] = []
    async with httpx.AsyncClient(timeout=10) as client:
        for _ in range(SENT):
            r = await client.get(f"http://{rt.address}:{rt.config.service.port}/")
            statuses.append(r.status_code)
    after = await rt.traffic()
    seconds = time.monotonic() - t0
    assert after is not None
    injected = statuses.count(500)
    assert 0 < injected < SENT and statuses.count(200) == SENT - injected

    b = delta(after.slots["b"], before.slots.get("b"))
    # The LB's health checks (every second) pass through the proxy too, and are not errors.
    checks = 2 * math.ceil(seconds) + 2
    print(f"\n{SENT} sent in {seconds:.1f}s, {injected} answered 500; the proxy counted {b.requests} on b, "
          f"{b.errors} 5xx, p95 {quantile(0.95, b.buckets)}")
    assert SENT <= b.requests <= SENT + checks
    assert b.errors == injected
    assert b.buckets[-1] == (INF, b.requests)
    assert dict(after.in_flight) == {"a": 0, "b": 0}
    assert sb.hosts.get("app-1").swap.in_flight_all() == {"a": 0, "b": 0}


async def test_no_proxy_no_traffic(sandbox, config):
    """An lb-drain host runs no proxy: nothing to read."""
    rt = open_runtime(config, droplet_of(sandbox, "app-1"))
    try:
        assert not (await rt.proxy()).installed
        assert await rt.traffic() is None
    finally:
        await rt.close()
