"""The sandbox LB under real HTTP traffic: DO's health-check thresholds, round robin, 503, no retry.

Backends are small aiohttp servers on a random 127.A.B.0/24 whose health the test flips; each
logs, in order, the health checks it answered and the public requests it received, so the
assertions are about order of events, not about timing.
"""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest
from aiohttp import web

from zdd_tui.sandbox.hosts import AddressBlock
from zdd_tui.sandbox.lb import SandboxLB

TAG = "web"


class Backend:
    def __init__(self, address: str):
        self.address = address
        self.healthy = True
        self.abort_public = False
        self.delay = 0.0
        self.events: list[tuple[str, float]] = []  # ("ok"|"fail"|"req", time)
        self.runner: web.AppRunner | None = None

    async def start(self, port: int) -> int:
        app = web.Application()
        app.router.add_get("/health", self.health)
        app.router.add_get("/", self.root)
        app.router.add_post("/echo", self.echo)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.address, port)
        await site.start()
        return site._server.sockets[0].getsockname()[1]

    async def health(self, request):
        kind = "ok" if self.healthy else "fail"
        if self.delay:
            await asyncio.sleep(self.delay)
        self.events.append((kind, time.monotonic()))
        return web.json_response({"status": kind}, status=200 if self.healthy else 503)

    async def root(self, request):
        self.events.append(("req", time.monotonic()))
        if self.abort_public:
            request.transport.close()  # the upstream dies mid-request
            await asyncio.sleep(0.05)
        return web.json_response({"api": "happy response", "host": self.address})

    async def echo(self, request):
        self.events.append(("req", time.monotonic()))
        body = await request.read()
        return web.Response(
            body=body[::-1], headers={"X-Seen-For": request.headers.get("X-Forwarded-For", ""), "X-Len": str(len(body))}
        )

    def requests(self) -> int:
        return sum(1 for k, _ in self.events if k == "req")

    def mark(self) -> int:
        return len(self.events)

    def since(self, mark: int) -> list[str]:
        return [k for k, _ in self.events[mark:]]

    async def stop(self):
        await self.runner.cleanup()


class World:
    """API-state stand-in: an LB object and droplets, as the DO API shapes them."""

    def __init__(self, port: int, **hc):
        self.lb_obj = {
            "id": "lb-1",
            "tag": TAG,
            "droplet_ids": [],
            "forwarding_rules": [
                {"entry_protocol": "http", "entry_port": 80, "target_protocol": "http", "target_port": port},
            ],
            "health_check": {
                "protocol": "http",
                "port": port,
                "path": "/health",
                "check_interval_seconds": 0.1,
                "response_timeout_seconds": 1,
                "unhealthy_threshold": 3,
                "healthy_threshold": 2,
                **hc,
            },
        }
        self.droplets: list[dict] = []

    def add(self, did: int, address: str, tags=(TAG,)):
        self.droplets.append(
            {"id": did, "name": f"web-{did}", "tags": list(tags),
             "networks": {"v4": [{"type": "public", "ip_address": address}]}}
        )


@pytest.fixture
async def setup():
    block = AddressBlock.random()
    backends = [Backend(block.address(1)), Backend(block.address(2)), Backend(block.address(3))]
    port = await backends[0].start(0)
    for b in backends[1:]:
        await b.start(port)
    world = World(port)
    lb = SandboxLB(lambda: world.lb_obj, lambda: world.droplets, reconcile_interval=0.05)
    await lb.start()
    http = aiohttp.ClientSession()
    yield world, lb, backends, http
    await http.close()
    await lb.stop()
    for b in backends:
        await b.stop()


async def wait_until(pred, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


async def get(http, lb) -> int:
    async with http.get(lb.url + "/") as r:
        await r.read()
        return r.status


async def test_new_droplet_starts_unhealthy_then_round_robin(setup):
    world, lb, (a, b, _c), http = setup
    world.add(1, a.address)
    world.add(2, b.address)
    # Before anyone passed `healthy_threshold` checks, nothing is served: 503, no request forwarded.
    assert await get(http, lb) == 503
    assert a.requests() == b.requests() == 0
    await wait_until(lambda: all(lb.health_view().get(i) for i in (1, 2)))
    # Neither took traffic before its 2nd successful check.
    for backend in (a, b):
        kinds = [k for k, _ in backend.events]
        assert kinds[:2] == ["ok", "ok"]
    ma, mb = a.mark(), b.mark()
    statuses = [await get(http, lb) for _ in range(40)]
    assert statuses == [200] * 40
    assert a.since(ma).count("req") == 20 and b.since(mb).count("req") == 20


async def test_failing_host_leaves_after_threshold_and_returns_after_healthy_threshold(setup):
    world, lb, (a, b, _c), http = setup
    world.add(1, a.address)
    world.add(2, b.address)
    await wait_until(lambda: all(lb.health_view().get(i) for i in (1, 2)))

    stop = asyncio.Event()

    async def load():  # one request at a time: at most one can be in flight when the LB decides
        while not stop.is_set():
            assert await get(http, lb) == 200

    loader = asyncio.create_task(load())
    await asyncio.sleep(0.2)
    mark = a.mark()
    a.healthy = False
    await wait_until(lambda: lb.health_view()[1] is False)
    await asyncio.sleep(0.5)
    after = a.since(mark)
    fails = [i for i, k in enumerate(after) if k == "fail"]
    assert len(fails) >= 3
    # Not before: requests still reached it between the 2nd and the 3rd failed check.
    assert "req" in after[fails[1] : fails[2]]
    # After: once the 3rd failed check was answered, at most the one request already in flight.
    assert after[fails[2] :].count("req") <= 1

    mark = a.mark()
    a.healthy = True
    await wait_until(lambda: lb.health_view()[1] is True)
    await asyncio.sleep(0.3)
    stop.set()
    await loader
    after = a.since(mark)
    oks = [i for i, k in enumerate(after) if k == "ok"]
    # No traffic until the 2nd consecutive successful check; traffic again after it.
    assert "req" not in after[: oks[1]]
    assert "req" in after[oks[1] :]
    assert b.requests() > 0


async def test_503_when_no_droplet_is_healthy_and_when_untagged(setup):
    world, lb, (a, b, _c), http = setup
    world.add(1, a.address)
    await wait_until(lambda: lb.health_view().get(1) is True)
    assert await get(http, lb) == 200
    a.healthy = False
    await wait_until(lambda: lb.health_view()[1] is False)
    async with http.get(lb.url + "/") as r:
        assert r.status == 503
        assert "Service Unavailable" in await r.text()
    # A droplet without the LB's tag is never a target, however healthy.
    world.add(2, b.address, tags=("other",))
    await asyncio.sleep(0.5)
    assert 2 not in lb.health_view()
    assert await get(http, lb) == 503
    assert b.requests() == 0


async def test_put_on_lb_applies_live(setup):
    world, lb, (a, b, _c), http = setup
    world.add(1, a.address)
    world.add(2, b.address, tags=("blue",))
    await wait_until(lambda: lb.health_view().get(1) is True)
    # A new health-check path that fails on the backend takes the droplet out.
    world.lb_obj = {**world.lb_obj, "health_check": {**world.lb_obj["health_check"], "path": "/missing"}}
    await wait_until(lambda: lb.health_view()[1] is False)
    assert await get(http, lb) == 503
    # Retag: the LB now targets only "blue"; droplet 1 is forgotten, droplet 2 starts unhealthy.
    world.lb_obj = {**world.lb_obj, "tag": "blue", "health_check": {**world.lb_obj["health_check"], "path": "/health"}}
    await wait_until(lambda: set(lb.health_view()) == {2})
    await wait_until(lambda: lb.health_view()[2] is True)
    mark = a.mark()
    assert [await get(http, lb) for _ in range(4)] == [200] * 4
    assert b.requests() == 4 and "req" not in a.since(mark)


async def test_failed_upstream_request_is_not_retried(setup):
    world, lb, (a, b, _c), http = setup
    world.add(1, a.address)
    world.add(2, b.address)
    await wait_until(lambda: all(lb.health_view().get(i) for i in (1, 2)))
    a.abort_public = True
    statuses = [await get(http, lb) for _ in range(6)]
    # Round robin: every other request goes to the broken upstream and fails, visibly.
    assert sorted(statuses) == [200, 200, 200, 502, 502, 502]
    assert a.requests() == 3 and b.requests() == 3  # one attempt each: no retry elsewhere or again


async def test_check_timeout_counts_as_failure(setup):
    world, lb, (a, _b, _c), _http = setup
    world.lb_obj["health_check"]["response_timeout_seconds"] = 0.3
    world.add(1, a.address)
    await wait_until(lambda: lb.health_view().get(1) is True)
    a.delay = 1.0  # 200 OK, but later than the response timeout
    await wait_until(lambda: lb.health_view()[1] is False)
    assert lb.health_details()[0]["last_detail"].startswith("timeout")


async def test_tcp_check_and_request_bodies_pass_through(setup):
    world, lb, (a, _b, _c), http = setup
    world.lb_obj["health_check"] = {**world.lb_obj["health_check"], "protocol": "tcp", "path": ""}
    a.healthy = False  # an HTTP check would fail; a TCP check only needs the port to accept
    world.add(1, a.address)
    await wait_until(lambda: lb.health_view().get(1) is True)
    assert not [k for k, _ in a.events if k in ("ok", "fail")]  # no HTTP request was made to check
    payload = bytes(range(256)) * 4096  # 1 MiB, streamed both ways
    async with http.post(lb.url + "/echo", data=payload) as r:
        assert r.status == 200
        assert await r.read() == payload[::-1]
        assert r.headers["X-Len"] == str(len(payload)) and r.headers["X-Seen-For"] == "127.0.0.1"


class ThreadBackend:
    """A backend on its own thread, so that it runs while the LB's event loop is stalled; it
    answers `delay` seconds late (a machine busy for everyone)."""

    def __init__(self, address: str, port: int):
        import http.server
        import threading

        me = self
        self.delay = 0.0

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                time.sleep(me.delay)
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer((address, port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


async def test_checks_timing_out_while_the_lb_itself_stalls_are_not_counted(setup):
    # The sandbox's LB shares the machine with its droplets: when its own event loop runs late
    # too (a busy machine), a check that timed out says nothing about the droplet. (A slow
    # droplet while the LB keeps up still fails: test_check_timeout_counts_as_failure.)
    world, lb, _backends, _http = setup
    block = AddressBlock.random()
    port = world.lb_obj["health_check"]["port"]
    backend = ThreadBackend(block.address(9), port)
    try:
        world.lb_obj["health_check"]["response_timeout_seconds"] = 0.3
        world.add(9, block.address(9))
        await wait_until(lambda: lb.health_view().get(9) is True)
        # Everything slow: the droplet answers after the timeout, and the LB's loop stalls (as a
        # starved process does) for 4 s, in pieces longer than the timeout.
        backend.delay = 1.0
        views = []
        end = time.monotonic() + 4.0
        while time.monotonic() < end:
            time.sleep(0.6)  # noqa: ASYNC251 - the stall of a starved process is the point
            await asyncio.sleep(0.02)
            views.append(lb.health_view()[9])
        await asyncio.sleep(0.2)  # the last check's verdict
        views.append(lb.health_view()[9])
        details = lb.health_details()[0]
        assert all(views), (views, details)  # never taken out for the LB's own lateness
        assert details["inconclusive"] > 0, details  # never taken out for the LB's own lateness
    finally:
        backend.stop()
