"""SIGTERM/SIGINT: drain, finish in-flight requests, exit 0 within the grace period."""

from __future__ import annotations

import asyncio
import http.client
import signal
import time

import aiohttp
import pytest

from service_testkit import ServiceProcess, StartService, port_open


async def wait_in_flight(svc: ServiceProcess, n: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    seen = -1
    while time.monotonic() < deadline:
        seen = svc.stats()["in_flight"]
        if seen >= n:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"in_flight reached {seen}, wanted {n}")


async def fetch(session: aiohttp.ClientSession, url: str) -> tuple[int, dict]:
    async with session.get(url) as resp:
        return resp.status, await resp.json()


@pytest.mark.slow
async def test_sigterm_under_load_completes_every_in_flight_request(
    start_service: StartService,
) -> None:
    # Requests slow enough that the checks below run while they are in flight, even on a
    # loaded CI machine.
    grace = 20.0
    svc = start_service(ZDD_LATENCY_MS="4000", ZDD_GRACE_SECONDS=str(grace))
    service_id = svc.stats()["id"]
    n = 20
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        in_flight = [asyncio.ensure_future(fetch(session, svc.url("/"))) for _ in range(n)]
        await wait_in_flight(svc, n)

        signalled = time.monotonic()
        svc.signal(signal.SIGTERM)
        svc.wait_line("zdd-service draining")
        # A second signal changes nothing (no early exit, no lost request).
        svc.signal(signal.SIGTERM)
        svc.wait_line("zdd-service signal-ignored")

        # New health checks see 503 while the slow requests are still running...
        status, body, headers = svc.get("/health")
        assert (status, body) == (503, {"status": "draining"})
        assert headers["Connection"] == "close"
        # ...while a request that arrives now (the LB has not noticed yet) is served normally,
        # on a new connection.
        late = asyncio.ensure_future(fetch(session, svc.url("/")))
        await wait_in_flight(svc, n + 1)
        assert svc.stats()["draining"] is True

        results = await asyncio.gather(*in_flight, late)
    assert [status for status, _ in results] == [200] * (n + 1)
    assert {body["id"] for _, body in results} == {service_id}

    code = await asyncio.get_running_loop().run_in_executor(None, svc.wait_exit, grace + 10)
    took = time.monotonic() - signalled
    assert code == 0
    assert took < grace, f"exit {took:.1f}s after SIGTERM, grace {grace}s"
    stopped = svc.wait_line("zdd-service stopped")
    assert f"served={n + 1}" in stopped and "forced=0" in stopped
    # Nothing listens any more.
    assert not port_open("127.0.0.1", svc.port)
    assert not port_open("127.0.0.1", svc.admin_port)


@pytest.mark.slow
async def test_sigint_drains_too_and_undrain_cannot_cancel_it(start_service: StartService) -> None:
    svc = start_service(ZDD_LATENCY_MS="3000", ZDD_GRACE_SECONDS="20")
    async with aiohttp.ClientSession() as session:
        slow = asyncio.ensure_future(fetch(session, svc.url("/")))
        await wait_in_flight(svc, 1)
        svc.signal(signal.SIGINT)
        assert "reason=SIGINT" in svc.wait_line("zdd-service draining")
        status, body, _ = svc.admin("/admin/undrain", method="POST")
        assert (status, body) == (409, {"draining": True, "error": "shutting down"})
        assert svc.get("/health")[0] == 503
        assert (await slow)[0] == 200
    assert await asyncio.get_running_loop().run_in_executor(None, svc.wait_exit, 20) == 0


async def test_grace_period_bounds_the_drain(start_service: StartService) -> None:
    # A request that would take 30 s is cut when the 1 s grace period ends.
    svc = start_service(ZDD_LATENCY_MS="30000", ZDD_GRACE_SECONDS="1")
    async with aiohttp.ClientSession() as session:
        slow = asyncio.ensure_future(fetch(session, svc.url("/")))
        await wait_in_flight(svc, 1)
        svc.signal(signal.SIGTERM)
        code = await asyncio.get_running_loop().run_in_executor(None, svc.wait_exit, 10)
        assert code == 0
        with pytest.raises(aiohttp.ClientError):
            await slow
    assert "forced=1" in svc.wait_line("zdd-service stopped")


async def test_idle_keep_alive_connection_does_not_hold_the_exit(
    start_service: StartService,
) -> None:
    svc = start_service(ZDD_GRACE_SECONDS="60")
    conn = http.client.HTTPConnection("127.0.0.1", svc.port, timeout=10)
    try:
        conn.request("GET", "/")
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 200 and not resp.will_close
        # The connection stays open and idle; nothing is in flight, so SIGTERM exits now
        # rather than at the 60 s deadline.
        svc.signal(signal.SIGTERM)
        code = await asyncio.get_running_loop().run_in_executor(None, svc.wait_exit, 15)
        assert code == 0
        assert "forced=0" in svc.wait_line("zdd-service stopped")
    finally:
        conn.close()


def test_sigterm_while_starting_exits_cleanly(start_service: StartService) -> None:
    svc = start_service(ZDD_START_DELAY_SECONDS="30")
    assert svc.get("/health")[1] == {"status": "starting"}
    svc.signal(signal.SIGTERM)
    assert svc.wait_exit(timeout=15) == 0
    # Draining wins over starting in what /health said last.
    assert [line.split()[1] for line in svc.lines] == ["starting", "listening", "draining", "stopped"]
