"""The sample service: public and (when asked for) admin HTTP servers in one process.

Written against the API common to aiohttp 3.8 (Debian bookworm's python3-aiohttp, used by the
offline lab image) and 3.9+ (pip): web.Application, AppRunner, TCPSite.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import random
import secrets
import signal
import time
from typing import Any

import aiohttp
from aiohttp import web

from .settings import Settings

JSON = "application/json"
PROBE_HEADER = "X-Zdd-Probe"
# Cap on remembered health-checker sources, so a scan from many addresses cannot grow memory.
MAX_CHECKERS = 256
# After the listener closes, how long requests already on accepted connections get to arrive.
LINGER_SECONDS = 0.1
# How long aiohttp may wait for connections at cleanup; by then nothing is in flight.
CLEANUP_TIMEOUT = 1.0

# aiohttp 3.9 moved shutdown_timeout from the site to the runner (and warns on the old place).
_RUNNER_TIMEOUT = "shutdown_timeout" in inspect.signature(web.BaseRunner.__init__).parameters


def _body(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


_HEALTH_BODIES = {s: _body({"status": s}) for s in ("ok", "draining", "starting", "failing")}
_NOT_FOUND = _body({"error": "not found"})
# Marked, so a load generator can tell the version's own failures from the rollout's.
_INJECTED_ERROR = _body({"error": "injected", "injected": True})


def log(event: str, **fields: Any) -> None:
    """One line per lifecycle event on stdout, flushed so `docker logs` and parents see it now."""
    parts = [f"zdd-service {event}"]
    for key, value in fields.items():
        text = str(value)
        if not text or any(c.isspace() or c in "\"=" for c in text):
            text = json.dumps(text)
        parts.append(f"{key}={text}")
    try:
        print(" ".join(parts), flush=True)
    except (BrokenPipeError, ValueError):
        # Whoever read our stdout is gone (or closed it); serving and draining matter more.
        pass


class Service:
    """State shared by the public and admin handlers."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.id = secrets.token_hex(8)
        self.started = time.monotonic()
        self.listening_since: float | None = None
        self.draining = False
        self.stopping = False  # a signal arrived: draining can no longer be undone
        self.stop_requested = asyncio.Event()
        self.stop_deadline = 0.0
        self.served = 0
        self.in_flight = 0  # public requests except /health, as reported by /admin/stats
        self.active = 0  # every public request, /health included: what shutdown waits for
        self.idle = asyncio.Event()
        self.idle.set()
        self.tasks: set[asyncio.Task[Any]] = set()
        self.last_request: float | None = None
        # source address -> [consecutive_ok, consecutive_fail, last_seen]
        self.checkers: dict[str, list[float]] = {}
        self.latency = settings.latency_ms / 1000.0
        self.error_rate = settings.error_rate
        self._errors = random.Random()
        self.root_body = _body(
            {"api": "happy response", "id": self.id, "version": settings.version}
        )

    # -- state -------------------------------------------------------------------------------

    def health_status(self) -> str:
        if self.draining:
            return "draining"
        if self.settings.fail_health:
            return "failing"
        if (
            self.listening_since is None
            or time.monotonic() - self.listening_since < self.settings.start_delay_seconds
        ):
            return "starting"
        return "ok"

    def record_check(self, source: str, ok: bool) -> None:
        entry = self.checkers.get(source)
        if entry is None:
            if len(self.checkers) >= MAX_CHECKERS:
                oldest = min(self.checkers, key=lambda k: self.checkers[k][2])
                del self.checkers[oldest]
            entry = self.checkers[source] = [0, 0, 0.0]
        if ok:
            entry[0] += 1
            entry[1] = 0
        else:
            entry[0] = 0
            entry[1] += 1
        entry[2] = time.monotonic()

    def stats(self) -> dict[str, Any]:
        now = time.monotonic()
        return {
            "id": self.id,
            "version": self.settings.version,
            "draining": self.draining,
            "healthy": self.health_status() == "ok",
            "served": self.served,
            "in_flight": self.in_flight,
            "last_request_age_seconds": (
                None if self.last_request is None else round(now - self.last_request, 3)
            ),
            "uptime_seconds": round(now - self.started, 3),
            "health_checkers": [
                {
                    "source": source,
                    "consecutive_ok": int(ok),
                    "consecutive_fail": int(fail),
                    "last_age_seconds": round(now - seen, 3),
                }
                for source, (ok, fail, seen) in sorted(self.checkers.items())
            ],
        }

    def on_signal(self, name: str) -> None:
        if self.stopping:
            log("signal-ignored", signal=name, reason="already stopping")
            return
        self.stopping = True
        self.draining = True
        self.stop_deadline = time.monotonic() + self.settings.grace_seconds
        log(
            "draining",
            reason=name,
            in_flight=self.active,
            grace_seconds=self.settings.grace_seconds,
        )
        self.stop_requested.set()

    # -- public port ---------------------------------------------------------------------------

    async def public(self, request: web.Request) -> web.StreamResponse:
        task = asyncio.current_task()
        self.active += 1
        self.idle.clear()
        if task is not None:
            self.tasks.add(task)
        try:
            if request.path == "/health" and request.method in ("GET", "HEAD"):
                response = self._health(request)
            else:
                response = await self._counted(request)
            if self.draining:
                # Tell keep-alive clients (the LB's pool) not to reuse a connection to a process
                # that will close its listener soon.
                response.force_close()
            return response
        finally:
            self.active -= 1
            if task is not None:
                self.tasks.discard(task)
            if self.active == 0:
                self.idle.set()

    def _health(self, request: web.Request) -> web.Response:
        status = self.health_status()
        code = 200 if status == "ok" else 503
        # Direct probes (docker HEALTHCHECK, the deployer) say who they are; only the rest are
        # the load balancer's checks that the engine reasons about.
        if PROBE_HEADER not in request.headers:
            self.record_check(request.remote or "unknown", code < 400)
        return web.Response(status=code, body=_HEALTH_BODIES[status], content_type=JSON)

    async def _counted(self, request: web.Request) -> web.Response:
        self.in_flight += 1
        self.last_request = time.monotonic()
        try:
            if request.path == "/" and request.method in ("GET", "HEAD"):
                if self.latency:
                    await asyncio.sleep(self.latency)
                if self.error_rate and self._errors.random() < self.error_rate:
                    response = web.Response(status=500, body=_INJECTED_ERROR, content_type=JSON)
                else:
                    response = web.Response(body=self.root_body, content_type=JSON)
            else:
                # Everything else, admin paths included, is 404 here: the admin API lives only
                # on the admin listener.
                response = web.Response(status=404, body=_NOT_FOUND, content_type=JSON)
            self.served += 1
            return response
        finally:
            self.in_flight -= 1

    # -- admin port ----------------------------------------------------------------------------

    async def admin(self, request: web.Request) -> web.Response:
        routes = {
            "/admin/stats": ("GET", self._stats),
            "/admin/drain": ("POST", self._drain),
            "/admin/undrain": ("POST", self._undrain),
        }
        route = routes.get(request.path)
        if route is None:
            return web.Response(status=404, body=_NOT_FOUND, content_type=JSON)
        method, handler = route
        allowed = {method, "HEAD"} if method == "GET" else {method}
        if request.method not in allowed:
            return web.Response(
                status=405,
                body=_body({"error": f"method not allowed, use {method}"}),
                content_type=JSON,
                headers={"Allow": method},
            )
        return handler()

    def _stats(self) -> web.Response:
        return web.Response(body=_body(self.stats()), content_type=JSON)

    def _drain(self) -> web.Response:
        if not self.draining:
            self.draining = True
            log("draining", reason="admin", in_flight=self.active)
        return web.Response(body=_body({"draining": True}), content_type=JSON)

    def _undrain(self) -> web.Response:
        if self.stopping:
            # After SIGTERM the process is on its way out; claiming otherwise would invite
            # traffic to a listener about to close.
            return web.Response(
                status=409,
                body=_body({"draining": True, "error": "shutting down"}),
                content_type=JSON,
            )
        if self.draining:
            self.draining = False
            log("undrained", reason="admin")
        return web.Response(body=_body({"draining": False}), content_type=JSON)


def _app(handler: Any) -> web.Application:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    return app


async def _start(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, web.TCPSite]:
    runner_kw: dict[str, Any] = {"access_log": None}
    site_kw: dict[str, Any] = {}
    if _RUNNER_TIMEOUT:
        runner_kw["shutdown_timeout"] = CLEANUP_TIMEOUT
    else:
        site_kw["shutdown_timeout"] = CLEANUP_TIMEOUT
    runner = web.AppRunner(app, **runner_kw)
    await runner.setup()
    site = web.TCPSite(runner, host, port, **site_kw)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner, site


def _bound(runner: web.AppRunner) -> str:
    addresses = runner.addresses
    if not addresses:
        return "?"
    host, port = addresses[0][:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def _wait_idle(service: Service, deadline: float) -> bool:
    remaining = deadline - time.monotonic()
    if service.active == 0:
        return True
    if remaining <= 0:
        return False
    try:
        await asyncio.wait_for(service.idle.wait(), remaining)
    except TimeoutError:
        return service.active == 0
    return True


async def serve(settings: Settings) -> int:
    service = Service(settings)
    log(
        "starting",
        version=settings.version,
        id=service.id,
        pid=os.getpid(),
        aiohttp=aiohttp.__version__,
    )
    if settings.crash_on_start:
        log("crashed", reason="ZDD_CRASH_ON_START", exit_code=3)
        return 3

    loop = asyncio.get_running_loop()
    # Handlers before binding, so a signal during start-up still drains instead of killing.
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, service.on_signal, sig.name)

    try:
        public_runner, public_site = await _start(
            _app(service.public), settings.host, settings.port
        )
    except OSError as exc:
        log("error", reason="cannot listen", address=f"{settings.host}:{settings.port}",
            detail=exc.strerror or exc)
        return 1
    admin_runner: web.AppRunner | None = None
    if settings.admin_enabled:
        try:
            admin_runner, _ = await _start(
                _app(service.admin), settings.admin_host, settings.admin_port or 0
            )
        except OSError as exc:
            await public_runner.cleanup()
            log("error", reason="cannot listen",
                address=f"{settings.admin_host}:{settings.admin_port}", detail=exc.strerror or exc)
            return 1

    service.listening_since = time.monotonic()
    log(
        "listening",
        public=_bound(public_runner),
        admin=_bound(admin_runner) if admin_runner is not None else "none",
        start_delay_seconds=settings.start_delay_seconds,
    )
    if admin_runner is not None and not settings.admin_is_loopback:
        log("warning", reason="admin port bound to a non-loopback address",
            admin=settings.admin_host)

    await service.stop_requested.wait()
    deadline = service.stop_deadline

    # Keep serving (new requests too: the LB may not have noticed the 503s yet) until nothing
    # is in flight, then stop accepting connections.
    await _wait_idle(service, deadline)
    # aiohttp 3.8's site.stop() also cancels running handlers, so close just the listening
    # socket first (the asyncio.Server, same attribute name in 3.8 .. 3.14) and let requests on
    # connections already accepted finish.
    listener = getattr(public_site, "_server", None)
    if listener is not None:
        listener.close()
        await asyncio.sleep(min(LINGER_SECONDS, max(0.0, deadline - time.monotonic())))
        await _wait_idle(service, deadline)

    forced = len(service.tasks)
    for task in list(service.tasks):
        # Grace period over: the contract bounds the exit by it.
        task.cancel()
    if forced:
        await asyncio.sleep(0)

    await public_runner.cleanup()
    if admin_runner is not None:
        await admin_runner.cleanup()
    log("stopped", served=service.served, forced=forced, exit_code=0)
    return 0
