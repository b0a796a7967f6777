"""The sandbox's load balancer: a real HTTP reverse proxy with DigitalOcean's health-check rules.

It serves on 127.0.0.1:<ephemeral> and forwards each request, round robin, to one healthy droplet
among those the LB targets (its `tag`, else its `droplet_ids`), at <droplet public IPv4>:<target
port of the first forwarding rule>. Config and droplets are read from the API's state on every
decision (through two callables), so a PUT on the LB changes tag, ports and health check live.

Health checks follow DigitalOcean's documented semantics:
- per droplet, one check every `check_interval_seconds`: HTTP(S) GET `path` on `port` (TCP: a
  connect) with `response_timeout_seconds`; a 200-399 answer is a success (redirects not followed);
- a healthy droplet leaves rotation after `unhealthy_threshold` consecutive failures, an unhealthy
  one returns after `healthy_threshold` consecutive successes;
- a droplet the LB starts targeting (new droplet, tag added, LB or sandbox (re)started) starts
  UNHEALTHY and takes no traffic until it has passed `healthy_threshold` checks in a row. DO's
  panel shows newly attached droplets as not yet healthy until checks pass; this is also the safe
  reading (never send traffic to a host nobody has checked). The first check runs at once.
With no healthy droplet the LB answers 503 (DO answers 503 "Service Unavailable" then too).

One departure, because this LB shares a machine (and an event loop) with the droplets it checks: a
check that timed out while this process itself ran late (its event loop late by a quarter of the
timeout or more, in total, during the check) counts neither way (`inconclusive`). On a busy machine
the sandbox must not take droplets out of rotation for its own slowness; a DO LB does not share a
CPU with the droplets. A droplet that is slow while this process keeps up still fails its checks.

Failed upstream requests are NOT retried, not even aiohttp's built-in one-shot retry of idempotent
requests on a reused connection: the zero-downtime tests must measure the engine, not hide its
mistakes behind the proxy. An upstream that fails answers 502, one that times out 504.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

log = logging.getLogger(__name__)

# Hop-by-hop headers (RFC 9110 7.6.1) are for one connection only; a proxy must not forward them.
_HOP = frozenset(
    h.lower()
    for h in (
        "Connection",
        "Keep-Alive",
        "Proxy-Authenticate",
        "Proxy-Authorization",
        "TE",
        "Trailer",
        "Transfer-Encoding",
        "Upgrade",
        "Content-Length",  # aiohttp sets it (or chunked encoding) itself
    )
)

DEFAULT_HEALTH_CHECK = {
    "protocol": "http",
    "port": 80,
    "path": "/",
    "check_interval_seconds": 10,
    "response_timeout_seconds": 5,
    "unhealthy_threshold": 5,
    "healthy_threshold": 3,
}


class LoopLag:
    """How late this process's event loop has run: a tick every TICK seconds records how much
    later than asked it woke (the last minute of ticks)."""

    TICK = 0.05

    def __init__(self) -> None:
        self._marks: deque[tuple[float, float]] = deque(maxlen=int(60 / self.TICK))
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="lb-loop-lag")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            asked = loop.time()
            await asyncio.sleep(self.TICK)
            now = loop.time()
            self._marks.append((now, max(0.0, now - asked - self.TICK)))

    async def during(self, start: float, end: float) -> float:
        """Seconds the loop ran late in total between `start` and `end` (loop.time()). Waits two
        ticks first: the tick that spans a stall is recorded only once the stall is over."""
        await asyncio.sleep(2 * self.TICK)
        return sum(late for at, late in self._marks if start < at <= end + 2 * self.TICK)


@dataclass(frozen=True)
class Target:
    droplet_id: int
    name: str
    address: str | None


@dataclass
class DropletHealth:
    """What the LB knows about one droplet's health (one per targeted droplet)."""

    target: Target
    healthy: bool = False  # new droplets start unhealthy (see module doc)
    consecutive_ok: int = 0
    consecutive_fail: int = 0
    checks: int = 0
    inconclusive: int = 0  # timeouts while this process itself ran late (see module doc)
    last_status: int | None = None
    last_detail: str = ""
    last_check_at: float | None = None  # time.time()
    changed_at: float = field(default_factory=time.time)
    task: asyncio.Task | None = field(default=None, repr=False)

    def to_dict(self) -> dict:
        return {
            "droplet_id": self.target.droplet_id,
            "name": self.target.name,
            "address": self.target.address,
            "healthy": self.healthy,
            "consecutive_ok": self.consecutive_ok,
            "consecutive_fail": self.consecutive_fail,
            "checks": self.checks,
            "inconclusive": self.inconclusive,
            "last_status": self.last_status,
            "last_detail": self.last_detail,
            "last_check_at": self.last_check_at,
            "changed_at": self.changed_at,
        }


def droplet_address(droplet: dict) -> str | None:
    """The droplet's public IPv4 (what a DO LB targets for a public droplet)."""
    for net in (droplet.get("networks") or {}).get("v4") or []:
        if net.get("type") == "public" and net.get("ip_address"):
            return net["ip_address"]
    for net in (droplet.get("networks") or {}).get("v4") or []:
        if net.get("ip_address"):
            return net["ip_address"]
    return None


class SandboxLB:
    """The proxy and its health checker.

    get_lb() -> the LB object as the DO API would return it (dict), or None when there is none;
    get_droplets() -> all droplets, DO-shaped dicts (id, name, tags, networks.v4).
    """

    def __init__(
        self,
        get_lb: Callable[[], dict | None],
        get_droplets: Callable[[], list[dict]],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        reconcile_interval: float = 0.2,
    ):
        self._get_lb = get_lb
        self._get_droplets = get_droplets
        self.host = host
        self.port = port
        self._reconcile_interval = reconcile_interval
        self._health: dict[int, DropletHealth] = {}
        self._rr = itertools.count()
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._check_session: aiohttp.ClientSession | None = None
        self._reconciler: asyncio.Task | None = None
        # Reaping tasks for dropped droplets' checkers: held so they are not garbage-collected
        # mid-run, and awaited by stop().
        self._reapers: set[asyncio.Task] = set()
        self._lag = LoopLag()
        # Counters tests and the status view can read.
        self.requests = 0
        self.responses_by_status: dict[int, int] = {}
        self.sent_to: dict[str, int] = {}  # droplet name -> requests forwarded

    # ----- lifecycle -----
    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        # A pooled client for proxied traffic; keep-alive shorter than the service's server side
        # so the pool drops idle connections before the server does.
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=10),
            auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        if hasattr(self._session, "_retry_connection"):
            self._session._retry_connection = False  # no hidden retries (see module doc)
        # Health checks use fresh connections, as an LB's checker does: a pooled connection would
        # hide a listener that stopped accepting.
        self._check_session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(force_close=True, limit=0),
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._proxy)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=False)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._lag.start()
        self.reconcile()
        self._reconciler = asyncio.create_task(self._reconcile_loop(), name="lb-reconcile")

    async def stop(self) -> None:
        if self._reconciler:
            self._reconciler.cancel()
            await asyncio.gather(self._reconciler, return_exceptions=True)
        for h in list(self._health.values()):
            await self._cancel(h)
        self._health.clear()
        if self._reapers:
            await asyncio.gather(*self._reapers, return_exceptions=True)
        await self._lag.stop()
        if self._runner:
            await self._runner.cleanup()
        for s in (self._session, self._check_session):
            if s:
                await s.close()

    # ----- config from state -----
    def lb(self) -> dict | None:
        try:
            return self._get_lb()
        except Exception:  # state being replaced: treat as "no LB" for this instant
            log.exception("reading LB config")
            return None

    def health_check(self) -> dict:
        lb = self.lb() or {}
        return {**DEFAULT_HEALTH_CHECK, **(lb.get("health_check") or {})}

    def target_port(self) -> int | None:
        rules = (self.lb() or {}).get("forwarding_rules") or []
        return int(rules[0]["target_port"]) if rules else None

    def targets(self) -> list[Target]:
        lb = self.lb()
        if not lb:
            return []
        tag = lb.get("tag") or None
        ids = set(lb.get("droplet_ids") or [])
        out = []
        for d in self._get_droplets():
            if (tag and tag in (d.get("tags") or [])) or (not tag and d.get("id") in ids):
                out.append(Target(int(d["id"]), d.get("name", str(d["id"])), droplet_address(d)))
        return sorted(out, key=lambda t: t.droplet_id)

    # ----- health -----
    def reconcile(self) -> None:
        """Start checking droplets the LB now targets; forget those it no longer targets."""
        wanted = {t.droplet_id: t for t in self.targets()}
        for did, h in list(self._health.items()):
            if did not in wanted or wanted[did].address != h.target.address:
                # Untargeted, or readdressed: a droplet that comes back starts over as new.
                reaper = asyncio.ensure_future(self._cancel(h))
                self._reapers.add(reaper)
                reaper.add_done_callback(self._reapers.discard)
                del self._health[did]
        for did, t in wanted.items():
            if did not in self._health:
                h = DropletHealth(t)
                self._health[did] = h
                h.task = asyncio.create_task(self._check_loop(h), name=f"lb-check-{t.name}")

    async def _reconcile_loop(self) -> None:
        while True:
            await asyncio.sleep(self._reconcile_interval)
            try:
                self.reconcile()
            except Exception:
                log.exception("LB reconcile")

    async def _cancel(self, h: DropletHealth) -> None:
        if h.task and not h.task.done():
            h.task.cancel()
            await asyncio.gather(h.task, return_exceptions=True)

    async def _check_loop(self, h: DropletHealth) -> None:
        while True:
            hc = self.health_check()  # re-read each time: a PUT on the LB applies at the next check
            started = time.monotonic()
            loop = asyncio.get_running_loop()
            began = loop.time()
            ok, status, detail = await self._check_once(h.target, hc)
            counted = True
            if status is None and detail.startswith("timeout"):
                late = await self._lag.during(began, loop.time())
                if late >= 0.25 * float(hc["response_timeout_seconds"]):
                    counted = False
                    h.inconclusive += 1
                    h.last_detail = f"{detail}, not counted: the sandbox itself ran {late:.1f}s late"
                    log.info("lb: %s check not counted (%s)", h.target.name, h.last_detail)
            if counted:
                self._record(h, hc, ok, status, detail)
            interval = max(0.05, float(hc["check_interval_seconds"]))
            await asyncio.sleep(max(0.0, interval - (time.monotonic() - started)))

    async def _check_once(self, t: Target, hc: dict) -> tuple[bool, int | None, str]:
        if not t.address:
            return False, None, "droplet has no IPv4 address"
        port = int(hc.get("port") or self.target_port() or 80)
        timeout = float(hc["response_timeout_seconds"])
        proto = (hc.get("protocol") or "http").lower()
        try:
            if proto == "tcp":
                _r, w = await asyncio.wait_for(asyncio.open_connection(t.address, port), timeout)
                w.close()
                return True, None, "connected"
            path = hc.get("path") or "/"
            if not path.startswith("/"):
                path = "/" + path
            assert self._check_session is not None
            async with self._check_session.get(
                f"{proto}://{t.address}:{port}{path}",
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=timeout),
                ssl=False,
            ) as resp:
                await resp.read()
                return 200 <= resp.status < 400, resp.status, f"HTTP {resp.status}"
        except TimeoutError:
            return False, None, f"timeout after {timeout:g}s"
        except (aiohttp.ClientError, OSError) as exc:
            strerror = getattr(exc, "strerror", None)  # OSError and aiohttp's connector errors
            return False, None, type(exc).__name__ + (f": {strerror}" if strerror else "")

    def _record(self, h: DropletHealth, hc: dict, ok: bool, status: int | None, detail: str) -> None:
        h.checks += 1
        h.last_status, h.last_detail, h.last_check_at = status, detail, time.time()
        if ok:
            h.consecutive_ok += 1
            h.consecutive_fail = 0
            if not h.healthy and h.consecutive_ok >= int(hc["healthy_threshold"]):
                h.healthy, h.changed_at = True, time.time()
                log.info("lb: %s healthy", h.target.name)
        else:
            h.consecutive_fail += 1
            h.consecutive_ok = 0
            if h.healthy and h.consecutive_fail >= int(hc["unhealthy_threshold"]):
                h.healthy, h.changed_at = False, time.time()
                log.info("lb: %s unhealthy (%s)", h.target.name, detail)

    def health_view(self) -> dict[int, bool]:
        """droplet id -> healthy, for the API's monitoring metric."""
        return {did: h.healthy for did, h in self._health.items()}

    def health_details(self) -> list[dict]:
        return [h.to_dict() for h in sorted(self._health.values(), key=lambda h: h.target.droplet_id)]

    def healthy_targets(self) -> list[Target]:
        return [h.target for h in sorted(self._health.values(), key=lambda h: h.target.droplet_id) if h.healthy]

    # ----- proxy -----
    def _pick(self) -> Target | None:
        pool = [t for t in self.healthy_targets() if t.address]
        if not pool:
            return None
        return pool[next(self._rr) % len(pool)]

    def _count(self, status: int) -> None:
        self.responses_by_status[status] = self.responses_by_status.get(status, 0) + 1

    async def _proxy(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        target = self._pick()
        port = self.target_port()
        if target is None or port is None:
            self._count(503)
            return web.Response(
                status=503,
                text=(
                    "<html><body><h1>503 Service Unavailable</h1>\n"
                    "No server is available to handle this request.\n</body></html>\n"
                ),
                content_type="text/html",
            )
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
        peer = request.remote or ""
        prior = request.headers.get("X-Forwarded-For")
        headers["X-Forwarded-For"] = f"{prior}, {peer}" if prior else peer
        headers["X-Forwarded-Proto"] = request.scheme
        headers["X-Forwarded-Port"] = str(self.port)
        idle = float((self.lb() or {}).get("http_idle_timeout_seconds") or 60)
        url = f"http://{target.address}:{port}{request.rel_url}"
        assert self._session is not None
        self.sent_to[target.name] = self.sent_to.get(target.name, 0) + 1
        body = request.content if request.body_exists else None
        resp: web.StreamResponse | None = None
        try:
            async with self._session.request(
                request.method,
                url,
                headers=headers,
                data=body,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=5, sock_read=idle),
            ) as up:
                resp = web.StreamResponse(status=up.status, reason=up.reason)
                for k, v in up.headers.items():
                    if k.lower() not in _HOP:
                        resp.headers.add(k, v)
                await resp.prepare(request)
                async for chunk in up.content.iter_any():
                    await resp.write(chunk)
                await resp.write_eof()
                self._count(up.status)
                return resp
        except TimeoutError:
            if resp is not None and resp.prepared:
                raise  # headers already sent: aborting the connection is all that is left
            self._count(504)
            return web.Response(status=504, text="504 Gateway Timeout\n")
        except (aiohttp.ClientError, OSError) as exc:
            log.info("lb: upstream %s failed: %s", target.name, type(exc).__name__)
            if resp is not None and resp.prepared:
                raise
            self._count(502)
            return web.Response(status=502, text="502 Bad Gateway\n")

    def stats(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "requests": self.requests,
            "responses_by_status": dict(self.responses_by_status),
            "sent_to": dict(self.sent_to),
            "droplets": self.health_details(),
        }
