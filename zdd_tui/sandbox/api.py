"""The sandbox's local DigitalOcean API: DO's paths, status codes and body shapes on 127.0.0.1.

    api = SandboxAPI(state_dir, token)          # state_dir=None keeps everything in memory
    await api.start()                           # listens on 127.0.0.1:<free port>; api.url
    ...                                         # point DOClient(api.url, token) at it
    await api.stop()

Served (bearer auth, 401 on a wrong token): /v2/account, /v2/account/keys[/{id|fingerprint}],
/v2/actions[/{id}], /v2/droplets (list by tag_name/name, create single/multiple, delete by tag),
/v2/droplets/{id}, /v2/tags[/{name}[/resources]], /v2/load_balancers[/{id}] (PUT replaces the whole
object), /v2/monitoring/metrics/load_balancer/droplets_health_checks, /v2/registries (list/create),
/v2/registries/{name} (+ docker-credentials, repositoriesV2, repositories/{repo}/tags[/{tag}]),
/v2/registries/options, /v2/registries/subscription, /v2/registries/validate-name, /v2/sizes.
Lists page with per_page (max 200), links.pages and meta.total; errors are {id, message,
request_id}. Rate limits per token, as DigitalOcean counts them: 250 a minute and 5,000 an hour
(constructor arguments; `api.clock` is their clock), `ratelimit-limit/-remaining/-reset` headers
on every DO response; beyond the minute's, 429 with `retry-after` (and remaining 0); beyond the
hour's, 429 without it (the budget returns at `ratelimit-reset`); GET /v2/account/keys has its
own 10 a minute.

DigitalOcean behaviours switched on in code (`api.imitate`, zdd_tui.sandbox.imitations; never
over the network): a token without a scope (403), a 404 on the registry list while there is
none, registry names taken elsewhere (409), several registries (Professional plan; else 422),
errored droplet create actions, load balancers ending `errored`, sizes offered in some regions
only, and the shape of the LB health metric. Docker credentials really expire:
`api.docker_auth_refusal(auth, push=...)` says what the registry answers a pull or push with
them (after `expiry_seconds`: "unauthorized: authentication required").

Sandbox-only endpoints (same bearer token, not rate limited):
- GET /sandbox/stats: requests served, per route ("GET /v2/droplets/{droplet_id}") and per status.
- POST /sandbox/faults {"path_regex", "method", "status", "count", "retry_after", "after"}:
  the next `count` matching requests get `status` (error body; `retry-after` when given).
  "after": true processes the request first and then answers the error (a create that happened
  but whose answer was lost). GET lists pending faults, DELETE clears them. Python: inject_fault().
- GET /sandbox/registry/{repository}/tags: the in-memory tags with their `behaviour`;
  POST the same path {"tag", "behaviour", "manifest_digest"?, "extra"?} adds or replaces one.

Hooks for the rest of the sandbox (load balancer, hosts):
- `address_allocator(droplet_dict) -> (public_ipv4, private_ipv4 | None)`: constructor argument;
  picks a new droplet's addresses (default 127.0.1.N, lowest free N).
- `api.on_droplet_created(droplet_dict)` / `api.on_droplet_deleted(droplet_dict)`: sync or async
  callables, called after the state change, before the HTTP answer. The dict is the stored droplet:
  on_droplet_created may change it (e.g. `networks`, or `droplet["_sandbox"][...]` for private
  data) or return a dict of keys to merge; the state is saved after the hook. A hook that raises
  turns the answer into a 500 (the droplet stays, as on DO when a create half-fails).
- `api.on_load_balancer_changed(lb_dict | None, lb_id)`: after a create, PUT or delete.
- `api.lb_health_provider(lb_id) -> {droplet_id: bool}` (sync or async): what the monitoring metric
  reports; droplets it omits are reported as unknown (no series). `api.lb_ip` is the address
  given to new load balancers.
- Registry: `api.state.put_registry_tag(repo, tag, behaviour=..., extra=...)` fills the in-memory
  registry; sandbox-only fields (`_behaviour`, `_extra`) never appear in DO-shaped answers.
  `registry_backend=DistributionRegistry(...)` (zdd_tui.sandbox.registry) reads a real registry.
  `registry_server` is the host docker-credentials' `auths` names (default: the backend's
  host:port, else "registry.digitalocean.com").
- Extra routes: `api.add_routes([web.get("/sandbox/hosts/...", handler), ...])` before start();
  they share the auth middleware and the request counter (not the DO rate limit).
- External droplets (lab): `api.state.create_droplet(name, tags=[...], public_ipv4=ip,
  sandbox={"external": True})` then `api.notify_created(droplet)` to run the hooks.
Everything persists in `<state_dir>/api-state.json` (see zdd_tui.sandbox.state).
"""

from __future__ import annotations

import base64
import collections
import hashlib
import inspect
import itertools
import json
import logging
import math
import re
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from zdd_tui.sandbox import LocalServer
from zdd_tui.sandbox.imitations import FORBIDDEN_MESSAGE, SCOPES, Imitations, WindowLimit
from zdd_tui.sandbox.registry import DistributionRegistry, RegistryBackend, StateRegistry
from zdd_tui.sandbox.state import (
    BEHAVIOURS,
    REGIONS,
    REGISTRY_TIERS,
    SIZES,
    Invalid,
    NotFound,
    SandboxState,
    public,
    size_obj,
)

log = logging.getLogger(__name__)

MAX_PER_PAGE = 200
DEFAULT_PER_PAGE = 20
MAX_NAMES_PER_CREATE = 10  # DigitalOcean's limit for a multiple-droplet create

ERROR_IDS = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    409: "conflict",
    422: "unprocessable_entity",
    429: "too_many_requests",
    500: "server_error",
    502: "bad_gateway",
    503: "service_unavailable",
    504: "gateway_timeout",
}
ERROR_MESSAGES = {
    401: "Unable to authenticate you",
    403: FORBIDDEN_MESSAGE,
    404: "The resource you were accessing could not be found.",
    429: "Too many requests",
    500: "Server was unable to give you a response.",
    503: "Service is temporarily unavailable.",
}


class APIError(Exception):
    def __init__(self, status: int, message: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status = status
        self.message = message or ERROR_MESSAGES.get(status, "error")
        self.headers = headers or {}


async def json_body(request: web.Request) -> dict:
    """The request's JSON object ({} when there is no body); a 400 APIError otherwise."""
    if not request.body_exists:
        return {}
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise APIError(400, "request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise APIError(400, "request body must be a JSON object")
    return body


@dataclass
class Fault:
    path_regex: str
    method: str | None = None
    status: int = 500
    count: int = 1
    retry_after: float | None = None
    after: bool = False
    message: str | None = None
    _rx: re.Pattern = field(init=False, repr=False)

    def __post_init__(self):
        self._rx = re.compile(self.path_regex)
        if not 400 <= int(self.status) <= 599:
            raise ValueError("status must be 400-599")
        self.status = int(self.status)
        self.count = int(self.count)

    def matches(self, method: str, path: str) -> bool:
        return (
            self.count > 0
            and (self.method is None or self.method.upper() == method)
            and self._rx.search(path) is not None
        )

    def to_dict(self) -> dict:
        return {
            "path_regex": self.path_regex,
            "method": self.method,
            "status": self.status,
            "count": self.count,
            "retry_after": self.retry_after,
            "after": self.after,
        }


class RateLimiter:
    """Sliding windows of one minute and one hour, as DigitalOcean counts per token."""

    def __init__(self, per_minute: int, per_hour: int):
        self.per_minute = per_minute
        self.per_hour = per_hour
        self.hits: collections.deque[float] = collections.deque()

    def _trim(self, now: float) -> None:
        while self.hits and self.hits[0] <= now - 3600:
            self.hits.popleft()

    def check(self, now: float) -> tuple[bool, dict, float | None]:
        """(allowed, headers, retry_after). Counts the request when allowed.

        As DigitalOcean answers: the hourly limit's 429 has no `retry-after` (the budget comes
        back as `ratelimit-reset` passes); the per-minute burst limit's 429 has one, with
        `ratelimit-remaining: 0`.
        """
        self._trim(now)
        minute = sum(1 for _ in itertools.takewhile(lambda t: t > now - 60, reversed(self.hits)))
        hourly_out = len(self.hits) >= self.per_hour
        allowed = minute < self.per_minute and not hourly_out
        retry_after: float | None = None
        if allowed:
            self.hits.append(now)
        elif not hourly_out:
            retry_after = max(1.0, math.ceil(self.hits[-self.per_minute] + 60 - now))
        reset = int(self.hits[0] + 3600) if self.hits else int(now)
        remaining = 0 if retry_after is not None else max(0, self.per_hour - len(self.hits))
        headers = {
            "ratelimit-limit": str(self.per_hour),
            "ratelimit-remaining": str(remaining),
            "ratelimit-reset": str(reset),
        }
        return allowed, headers, retry_after


async def _maybe_await(value: Any) -> Any:
    if inspect.isawaitable(value):
        return await value
    return value


class SandboxAPI(LocalServer):
    def __init__(
        self,
        state_dir: str | Path | None,
        token: str,
        *,
        registry_backend: RegistryBackend | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        activation_delay: float = 1.0,
        address_allocator: Callable[[dict], tuple[str, str | None]] | None = None,
        rate_per_minute: int = 250,
        rate_per_hour: int = 5000,
        registry_server: str | None = None,
        lb_ip: str = "127.0.0.1",
        account_email: str = "sandbox@zdd-tui.invalid",
    ):
        if not token:
            raise ValueError("the sandbox API needs a token")
        self._token = token
        self.state = SandboxState(state_dir, activation_delay=activation_delay, address_allocator=address_allocator)
        self.registry_backend: RegistryBackend = registry_backend or StateRegistry(self.state)
        if registry_server is None:
            registry_server = (
                registry_backend.server if isinstance(registry_backend, DistributionRegistry)
                else "registry.digitalocean.com"
            )
        self.registry_server = registry_server
        self.host = host
        self.port = port
        self.lb_ip = lb_ip
        self.account_email = account_email
        self.limiter = RateLimiter(rate_per_minute, rate_per_hour)
        self.clock: Callable[[], float] = time.time  # the rate limits' clock (tests replace it)
        self.imitate = Imitations()
        self._keys_limit = WindowLimit(self.imitate.keys_per_minute, 60)
        self.faults: list[Fault] = []
        self.on_droplet_created: Callable[[dict], Any] | None = None
        self.on_droplet_deleted: Callable[[dict], Any] | None = None
        self.on_load_balancer_changed: Callable[[dict | None, str], Any] | None = None
        self.lb_health_provider: Callable[[str], dict[int, bool] | Awaitable[dict[int, bool]]] | None = None
        self.requests_total = 0
        self.by_route: collections.Counter[str] = collections.Counter()
        self.by_status: collections.Counter[str] = collections.Counter()
        self.rate_limited = 0
        self.faults_injected = 0
        # (method, path, query, status) of recent requests, for tests that check what was sent.
        self.request_log: collections.deque[tuple[str, str, str, int]] = collections.deque(maxlen=5000)
        # Docker credentials handed out (expiry, read_write); the secrets themselves are not kept.
        self.issued_credentials: list[dict] = []
        self._minted: dict[str, dict] = {}  # sha256 of a credential handed out -> its scope and expiry
        self.app = web.Application(middlewares=[self._middleware], client_max_size=4 * 1024 * 1024)
        self._add_do_routes()
        self._runner: web.AppRunner | None = None
        self.url: str | None = None

    def __repr__(self) -> str:
        return f"SandboxAPI(url={self.url!r}, state={self.state.path!s})"

    # ---- lifecycle ---------------------------------------------------------------------------

    def add_routes(self, routes: list[web.RouteDef]) -> None:
        """Register extra (sandbox) routes; only before start()."""
        self.app.add_routes(routes)

    async def start(self) -> str:
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        port = self._runner.addresses[0][1]
        self.port = port
        self.url = f"http://{self.host}:{port}"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


    # ---- test helpers ------------------------------------------------------------------------

    def inject_fault(
        self,
        path_regex: str,
        status: int = 500,
        *,
        method: str | None = None,
        count: int = 1,
        retry_after: float | None = None,
        after: bool = False,
    ) -> Fault:
        f = Fault(path_regex, method, status, count, retry_after, after)
        self.faults.append(f)
        return f

    @property
    def stats(self) -> dict:
        return {
            "requests_total": self.requests_total,
            "by_route": dict(self.by_route),
            "by_status": dict(self.by_status),
            "rate_limited": self.rate_limited,
            "faults_injected": self.faults_injected,
            "ratelimit_remaining_hour": max(0, self.limiter.per_hour - len(self.limiter.hits)),
        }

    async def notify_created(self, droplet: dict) -> dict:
        """Run on_droplet_created for a droplet made through `state` directly (e.g. external ones)."""
        if self.on_droplet_created is not None:
            changes = await _maybe_await(self.on_droplet_created(droplet))
            if isinstance(changes, dict):
                droplet.update(changes)
        self.state.save()
        return droplet

    # ---- middleware: request ids, auth, rate limit, faults, counting, errors -----------------

    def _authorized(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        return scheme.lower() == "bearer" and secrets.compare_digest(value.strip().encode(), self._token.encode())

    @web.middleware
    async def _middleware(self, request: web.Request, handler):
        request_id = str(uuid.uuid4())
        route = request.match_info.route.resource
        route_name = f"{request.method} {route.canonical if route is not None else request.path}"
        is_do = request.path.startswith("/v2/")
        headers: dict[str, str] = {"x-request-id": request_id}
        fault_after: Fault | None = None
        try:
            if not self._authorized(request):
                raise APIError(401)
            if is_do:
                allowed, rl_headers, retry_after = self.limiter.check(self.clock())
                headers.update(rl_headers)
                if not allowed:
                    self.rate_limited += 1
                    extra = {"retry-after": str(int(retry_after))} if retry_after is not None else {}
                    raise APIError(429, "API rate limit exceeded.", extra)
                self._imitate(request, headers)
            if not request.path.startswith("/sandbox/faults"):
                fault = next((f for f in self.faults if f.matches(request.method, request.path)), None)
                if fault is not None:
                    fault.count -= 1
                    self.faults_injected += 1
                    self.faults = [f for f in self.faults if f.count > 0]
                    if not fault.after:
                        raise self._fault_error(fault)
                    fault_after = fault
            self.state.refresh()
            response = await handler(request)
            if fault_after is not None:
                raise self._fault_error(fault_after)
        except APIError as e:
            headers.update(e.headers)
            response = web.json_response(
                {"id": ERROR_IDS.get(e.status, "error"), "message": e.message, "request_id": request_id},
                status=e.status,
            )
        except web.HTTPException as e:
            # aiohttp's own 404/405 for unknown paths and methods: answer them in DO's error form.
            status = e.status
            response = web.json_response(
                {"id": ERROR_IDS.get(status, "error"), "message": e.reason or "error", "request_id": request_id},
                status=status,
            )
        except Exception as e:  # a handler or hook bug: a DO-shaped 500, and the log says what
            log.exception("sandbox API: %s failed", route_name)
            response = web.json_response(
                {
                    "id": "server_error",
                    "message": f"sandbox internal error: {type(e).__name__}",
                    "request_id": request_id,
                },
                status=500,
            )
        for k, v in headers.items():
            response.headers[k] = v
        self.requests_total += 1
        self.by_route[route_name] += 1
        self.by_status[str(response.status)] += 1
        self.request_log.append((request.method, request.path, request.query_string, response.status))
        return response

    def _imitate(self, request: web.Request, headers: dict[str, str]) -> None:
        """DigitalOcean's per-request refusals that `imitate` switches on: a missing scope (403),
        the SSH key list's own limit (429 with retry-after)."""
        resource = request.match_info.route.resource
        op = (request.method, resource.canonical if resource is not None else request.path)
        missing = [s for s in SCOPES.get(op, ()) if s in self.imitate.missing_scopes]
        if missing:
            raise APIError(403, FORBIDDEN_MESSAGE)
        if op == ("GET", "/v2/account/keys"):
            self._keys_limit.limit = self.imitate.keys_per_minute
            wait = self._keys_limit.hit(self.clock())
            if wait > 0:
                self.rate_limited += 1
                headers["ratelimit-remaining"] = "0"
                raise APIError(429, "API rate limit exceeded.", {"retry-after": str(max(1, math.ceil(wait)))})

    def _fault_error(self, f: Fault) -> APIError:
        headers = {"retry-after": str(math.ceil(f.retry_after))} if f.retry_after is not None else {}
        return APIError(f.status, f.message, headers)

    # ---- helpers -----------------------------------------------------------------------------

    @staticmethod
    def _paginate(request: web.Request, items: list, key: str) -> web.Response:
        try:
            per_page = int(request.query.get("per_page", DEFAULT_PER_PAGE))
            page = int(request.query.get("page", 1))
        except ValueError:
            raise APIError(400, "page and per_page must be integers") from None
        per_page = min(max(per_page, 1), MAX_PER_PAGE)
        page = max(page, 1)
        total = len(items)
        last = max(1, math.ceil(total / per_page))
        chunk = items[(page - 1) * per_page : page * per_page]
        pages: dict[str, str] = {}

        def link(p: int) -> str:
            return str(request.url.update_query(page=str(p), per_page=str(per_page)))

        if page > 1:
            pages["first"] = link(1)
            pages["prev"] = link(min(page - 1, last))
        if page < last:
            pages["next"] = link(page + 1)
            pages["last"] = link(last)
        return web.json_response({key: public(chunk), "links": {"pages": pages}, "meta": {"total": total}})

    def _get(self, fn, *args, **kwargs):
        """Run a state call, mapping its NotFound/Invalid to DO's 404/422."""
        try:
            return fn(*args, **kwargs)
        except NotFound as e:
            raise APIError(404, str(e) or None) from None
        except Invalid as e:
            raise APIError(422, str(e)) from None

    # ---- routes ------------------------------------------------------------------------------

    def _add_do_routes(self) -> None:
        r = self.app.router
        r.add_get("/v2/account", self.h_account)
        r.add_get("/v2/account/keys", self.h_keys_list)
        r.add_post("/v2/account/keys", self.h_keys_create)
        r.add_get("/v2/account/keys/{ssh_key_identifier}", self.h_key_get)
        r.add_delete("/v2/account/keys/{ssh_key_identifier}", self.h_key_delete)
        r.add_get("/v2/actions", self.h_actions_list)
        r.add_get("/v2/actions/{action_id}", self.h_action_get)
        r.add_get("/v2/droplets", self.h_droplets_list)
        r.add_post("/v2/droplets", self.h_droplets_create)
        r.add_delete("/v2/droplets", self.h_droplets_delete_by_tag)
        r.add_get("/v2/droplets/{droplet_id}", self.h_droplet_get)
        r.add_delete("/v2/droplets/{droplet_id}", self.h_droplet_delete)
        r.add_get("/v2/tags", self.h_tags_list)
        r.add_post("/v2/tags", self.h_tags_create)
        r.add_get("/v2/tags/{tag_id}", self.h_tag_get)
        r.add_delete("/v2/tags/{tag_id}", self.h_tag_delete)
        r.add_post("/v2/tags/{tag_id}/resources", self.h_tag_assign)
        r.add_delete("/v2/tags/{tag_id}/resources", self.h_tag_unassign)
        r.add_get("/v2/load_balancers", self.h_lbs_list)
        r.add_post("/v2/load_balancers", self.h_lb_create)
        r.add_get("/v2/load_balancers/{lb_id}", self.h_lb_get)
        r.add_put("/v2/load_balancers/{lb_id}", self.h_lb_put)
        r.add_delete("/v2/load_balancers/{lb_id}", self.h_lb_delete)
        r.add_get("/v2/monitoring/metrics/load_balancer/droplets_health_checks", self.h_lb_health)
        r.add_get("/v2/registries", self.h_registries_list)
        r.add_post("/v2/registries", self.h_registry_create)
        r.add_get("/v2/registries/options", self.h_registry_options)
        r.add_post("/v2/registries/validate-name", self.h_registry_validate_name)
        r.add_get("/v2/registries/subscription", self.h_registry_subscription)
        r.add_get("/v2/registries/{registry_name}", self.h_registry_get)
        r.add_delete("/v2/registries/{registry_name}", self.h_registry_delete)
        r.add_get("/v2/registries/{registry_name}/docker-credentials", self.h_docker_credentials)
        r.add_get("/v2/registries/{registry_name}/repositoriesV2", self.h_repositories)
        r.add_get("/v2/registries/{registry_name}/repositories/{repository_name}/tags", self.h_repo_tags)
        r.add_delete(
            "/v2/registries/{registry_name}/repositories/{repository_name}/tags/{repository_tag}",
            self.h_repo_tag_delete,
        )
        r.add_get("/v2/sizes", self.h_sizes)
        r.add_get("/sandbox/stats", self.h_stats)
        r.add_get("/sandbox/faults", self.h_faults_list)
        r.add_post("/sandbox/faults", self.h_faults_add)
        r.add_delete("/sandbox/faults", self.h_faults_clear)
        r.add_get("/sandbox/registry/{repository}/tags", self.h_sb_tags)
        r.add_post("/sandbox/registry/{repository}/tags", self.h_sb_tag_put)

    # account, keys, actions, sizes

    async def h_account(self, request):
        return web.json_response(
            {
                "account": {
                    "droplet_limit": 25,
                    "floating_ip_limit": 3,
                    "email": self.account_email,
                    "name": "zdd-tui sandbox",
                    "uuid": self.state.data["account_uuid"],
                    "email_verified": True,
                    "status": "active",
                    "status_message": "",
                    "team": {"uuid": self.state.data["account_uuid"], "name": "sandbox"},
                }
            }
        )

    async def h_keys_list(self, request):
        return self._paginate(request, self.state.ssh_keys(), "ssh_keys")

    async def h_keys_create(self, request):
        body = await json_body(request)
        if not body.get("name") or not body.get("public_key"):
            raise APIError(422, "name and public_key are required")
        key = self._get(self.state.create_ssh_key, str(body["name"]), str(body["public_key"]))
        return web.json_response({"ssh_key": public(key)}, status=201)

    async def h_key_get(self, request):
        key = self._get(self.state.ssh_key, request.match_info["ssh_key_identifier"])
        return web.json_response({"ssh_key": public(key)})

    async def h_key_delete(self, request):
        self._get(self.state.delete_ssh_key, request.match_info["ssh_key_identifier"])
        return web.Response(status=204)

    async def h_actions_list(self, request):
        actions = sorted(self.state.data["actions"].values(), key=lambda a: a["id"], reverse=True)
        return self._paginate(request, actions, "actions")

    async def h_action_get(self, request):
        a = self._get(self.state.action, request.match_info["action_id"])
        return web.json_response({"action": public(a)})

    def _size(self, slug: str) -> dict:
        """A size as DigitalOcean lists it; `imitate.size_regions` narrows where it is offered."""
        size = size_obj(slug)
        if slug in self.imitate.size_regions:
            size["regions"] = list(self.imitate.size_regions[slug])
            size["available"] = bool(size["regions"])
        return size

    async def h_sizes(self, request):
        return self._paginate(request, [self._size(s) for s in SIZES], "sizes")

    # droplets

    async def h_droplets_list(self, request):
        q = request.query
        if "tag_name" in q and "name" in q:
            raise APIError(422, "tag_name and name cannot be combined")
        items = self.state.droplets(tag=q.get("tag_name"), name=q.get("name"))
        return self._paginate(request, items, "droplets")

    async def h_droplets_create(self, request):
        body = await json_body(request)
        if "names" in body:
            names = body["names"]
            if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
                raise APIError(422, "names must be a non-empty list of strings")
            if len(names) > MAX_NAMES_PER_CREATE:
                raise APIError(422, f"at most {MAX_NAMES_PER_CREATE} names per request")
            multiple = True
        elif "name" in body:
            names, multiple = [body["name"]], False
        else:
            raise APIError(422, "name or names is required")
        name_rx = re.compile(r"[a-zA-Z0-9]?[a-z0-9A-Z.\-]*[a-z0-9A-Z]")
        for n in names:
            if not isinstance(n, str) or not name_rx.fullmatch(n) or len(n) > 255:
                raise APIError(422, f"name {n!r} is invalid: use letters, digits, '.' and '-'")
        for k in ("size", "image"):
            if not body.get(k):
                raise APIError(422, f"{k} is required")
        if body["size"] not in SIZES:
            raise APIError(422, f"size {body['size']!r} is not available")
        region = body.get("region") or "nyc3"
        if region not in REGIONS:
            raise APIError(422, f"region {region!r} is not available")
        if region not in self._size(body["size"])["regions"]:
            raise APIError(422, "Size is not available in this region.")
        tags = body.get("tags") or []
        tag_rx = re.compile(r"[a-zA-Z0-9_\-:]+")
        if not isinstance(tags, list) or not all(isinstance(t, str) and tag_rx.fullmatch(t) for t in tags):
            raise APIError(422, "tags must be a list of names of letters, digits, '_', '-' and ':'")
        created = []
        for n in names:
            d = self._get(
                self.state.create_droplet,
                n,
                region=region,
                size=body["size"],
                image=body["image"],
                tags=tags,
                sandbox={"ssh_keys": list(body.get("ssh_keys") or []), "user_data": bool(body.get("user_data"))},
            )
            created.append(d)
        for d in created:
            await self.notify_created(d)
        self._fail_creates(created)
        base = f"{request.url.scheme}://{request.host}/v2/actions/"
        links = {
            "actions": [
                {
                    "id": d["_sandbox"]["create_action_id"],
                    "rel": "create",
                    "href": base + str(d["_sandbox"]["create_action_id"]),
                }
                for d in created
            ]
        }
        if multiple:
            return web.json_response({"droplets": public(created), "links": links}, status=202)
        return web.json_response({"droplet": public(created[0]), "links": links}, status=202)

    def _fail_creates(self, created: list[dict]) -> None:
        """`imitate.failing_creates`: these droplets' create actions error and they never start."""
        for d in created:
            if self.imitate.failing_creates <= 0:
                break
            self.imitate.failing_creates -= 1
            action = self.state.action(d["_sandbox"]["create_action_id"])
            action["status"] = "errored"
            action["completed_at"] = None
            d["_sandbox"]["active_at"] = 1e18  # never
        self.state.save()

    async def _delete_droplet(self, droplet_id) -> None:
        d = self._get(self.state.delete_droplet, droplet_id)
        if self.on_droplet_deleted is not None:
            await _maybe_await(self.on_droplet_deleted(d))

    async def h_droplet_get(self, request):
        d = self._get(self.state.droplet, request.match_info["droplet_id"])
        return web.json_response({"droplet": public(d)})

    async def h_droplet_delete(self, request):
        await self._delete_droplet(request.match_info["droplet_id"])
        return web.Response(status=204)

    async def h_droplets_delete_by_tag(self, request):
        tag = request.query.get("tag_name")
        if not tag:
            raise APIError(422, "tag_name is required")
        for d in self.state.droplets(tag=tag):
            await self._delete_droplet(d["id"])
        return web.Response(status=204)

    # tags

    async def h_tags_list(self, request):
        return self._paginate(request, [self.state.tag_obj(t) for t in self.state.data["tags"]], "tags")

    async def h_tags_create(self, request):
        body = await json_body(request)
        name = body.get("name")
        if not isinstance(name, str) or not re.fullmatch(r"[a-zA-Z0-9_\-:]{1,255}", name):
            raise APIError(422, "name must be 1-255 letters, digits, '_', '-' or ':'")
        return web.json_response({"tag": self.state.create_tag(name)}, status=201)

    async def h_tag_get(self, request):
        return web.json_response({"tag": self._get(self.state.tag_obj, request.match_info["tag_id"])})

    async def h_tag_delete(self, request):
        self._get(self.state.delete_tag, request.match_info["tag_id"])
        return web.Response(status=204)

    async def _tag_resources(self, request, add: bool):
        body = await json_body(request)
        resources = body.get("resources")
        if not isinstance(resources, list):
            raise APIError(422, "resources is required")
        self._get(self.state.tag_resources, request.match_info["tag_id"], resources, add=add)
        return web.Response(status=204)

    async def h_tag_assign(self, request):
        return await self._tag_resources(request, True)

    async def h_tag_unassign(self, request):
        return await self._tag_resources(request, False)

    # load balancers

    async def _lb_changed(self, lb: dict | None, lb_id: str) -> None:
        if self.on_load_balancer_changed is not None:
            await _maybe_await(self.on_load_balancer_changed(lb, lb_id))

    async def h_lbs_list(self, request):
        return self._paginate(request, self.state.load_balancers(), "load_balancers")

    async def h_lb_create(self, request):
        body = await json_body(request)
        lb = self._get(lambda: self.state.create_load_balancer(body, ip=self.lb_ip))
        await self._lb_changed(lb, lb["id"])
        response = web.json_response({"load_balancer": public(lb)}, status=202)
        if self.imitate.errored_load_balancers:
            lb["status"] = "errored"  # after the answer, as DigitalOcean's comes while it is "new"
            self.state.save()
        return response

    async def h_lb_get(self, request):
        lb = self._get(self.state.load_balancer, request.match_info["lb_id"])
        return web.json_response({"load_balancer": public(lb)})

    async def h_lb_put(self, request):
        body = await json_body(request)
        lb = self._get(self.state.update_load_balancer, request.match_info["lb_id"], body)
        await self._lb_changed(lb, lb["id"])
        return web.json_response({"load_balancer": public(lb)})

    async def h_lb_delete(self, request):
        lb_id = request.match_info["lb_id"]
        self._get(self.state.delete_load_balancer, lb_id)
        await self._lb_changed(None, lb_id)
        return web.Response(status=204)

    async def h_lb_health(self, request):
        q = request.query
        for k in ("lb_id", "start", "end"):
            if not q.get(k):
                raise APIError(400, f"{k} is required")
        lb = self._get(self.state.load_balancer, q["lb_id"])
        health: dict = {}
        if self.lb_health_provider is not None:
            health = await _maybe_await(self.lb_health_provider(lb["id"])) or {}
        health = {int(k): v for k, v in health.items()}
        try:
            ts = int(float(q["end"]))
        except ValueError:
            ts = int(time.time())
        result = []
        for d in self.state.lb_droplets(lb):
            if health.get(d["id"]) is None:
                continue
            result.append(self._health_series(lb, d, health[d["id"]], ts))
        return web.json_response({"status": "success", "data": {"resultType": "matrix", "result": result}})

    def _health_series(self, lb: dict, d: dict, healthy: bool, ts: int) -> dict:
        """One droplet's series, labelled and scaled as `imitate.lb_health_shape` says."""
        shape = self.imitate.lb_health_shape
        if shape == "droplet_id":
            labels = {"lb_id": lb["id"], "droplet_id": str(d["id"])}
            return {"metric": labels, "values": [[ts, "1" if healthy else "0"]]}
        server = str(d["id"])
        if shape == "server-ip":
            addr = self.state.droplet_ipv4(d, "private") or self.state.droplet_ipv4(d, "public") or ""
            server = f"{addr}:{lb['health_check']['port']}"
        labels = {"lb_id": lb["id"], "region": lb["region"]["slug"], "server": server}
        return {"metric": labels, "values": [[ts, "100" if healthy else "0"]]}

    # registry

    def _registry_obj(self, reg: dict, with_subscription: bool = False) -> dict:
        out = public(reg)
        if with_subscription:
            tier = next(t for t in REGISTRY_TIERS if t["slug"] == reg.get("_tier", "starter"))
            out["subscription"] = {"tier": dict(tier), "created_at": reg["created_at"], "updated_at": reg["created_at"]}
        return out

    async def h_registries_list(self, request):
        regs = self.state.registries()
        if not regs and self.imitate.registry_list_404:
            raise APIError(404, "registry not found")
        return web.json_response({"registries": [self._registry_obj(r, True) for r in regs]})

    def _check_registry_name(self, name: str) -> None:
        if name in self.imitate.taken_registry_names:
            raise APIError(409, f"registry name {name!r} is not available")

    async def h_registry_validate_name(self, request):
        body = await json_body(request)
        name = body.get("name")
        if not isinstance(name, str) or not re.fullmatch(r"[a-z0-9-]{1,63}", name):
            raise APIError(422, "name must be 1-63 lowercase letters, digits and '-'")
        self._check_registry_name(name)
        if any(r["name"] == name for r in self.state.registries()):
            raise APIError(409, f"registry name {name!r} is not available")
        return web.Response(status=204)

    async def h_registry_create(self, request):
        body = await json_body(request)
        name = body.get("name", "")
        self._check_registry_name(name)
        reg = self._get(
            lambda: self.state.create_registry(
                name, body.get("subscription_tier_slug", "starter"), body.get("region"),
                several=self.imitate.professional,
            )
        )
        return web.json_response({"registry": self._registry_obj(reg)}, status=201)

    async def h_registry_get(self, request):
        reg = self._get(self.state.registry, request.match_info["registry_name"])
        return web.json_response({"registry": self._registry_obj(reg, True)})

    async def h_registry_delete(self, request):
        self._get(self.state.delete_registry, request.match_info["registry_name"])
        return web.Response(status=204)

    async def h_registry_options(self, request):
        tiers = [dict(t, eligible=True, eligibility_reasons=[]) for t in REGISTRY_TIERS]
        return web.json_response(
            {"options": {"available_regions": ["nyc3", "sfo3", "sfo2", "ams3", "sgp1", "fra1", "blr1", "syd1"],
                         "subscription_tiers": tiers}}
        )

    async def h_registry_subscription(self, request):
        reg = self._get(self.state.registry)
        tier = next(t for t in REGISTRY_TIERS if t["slug"] == reg.get("_tier", "starter"))
        return web.json_response(
            {"subscription": {"tier": dict(tier), "created_at": reg["created_at"], "updated_at": reg["created_at"]}}
        )

    async def h_docker_credentials(self, request):
        self._get(self.state.registry, request.match_info["registry_name"])
        q = request.query
        read_write = q.get("read_write", "false").lower() == "true"
        try:
            expiry = int(q.get("expiry_seconds", "0"))
        except ValueError:
            raise APIError(400, "expiry_seconds must be an integer") from None
        if expiry < 0:
            raise APIError(400, "expiry_seconds must be positive")
        if isinstance(self.registry_backend, DistributionRegistry) and self.registry_backend.auth_value():
            auth = self.registry_backend.auth_value()
        else:
            # A credential of its own, which docker_auth_refusal() checks until it expires.
            user = "rw" if read_write else "ro"
            auth = base64.b64encode(f"{user}-{secrets.token_hex(8)}:{secrets.token_urlsafe(24)}".encode()).decode()
            self._minted_auth(auth, read_write, expiry)
        self.issued_credentials.append({"read_write": read_write, "expiry_seconds": expiry, "at": time.time()})
        return web.json_response({"auths": {self.registry_server: {"auth": auth}}})

    def _minted_auth(self, auth: str, read_write: bool, expiry_seconds: int) -> None:
        # Kept as a digest only: the sandbox never holds a usable credential after answering.
        expires = self.clock() + expiry_seconds if expiry_seconds > 0 else None  # DO: 0 = no expiry
        digest = hashlib.sha256(auth.encode()).hexdigest()
        self._minted[digest] = {"read_write": read_write, "expires_at": expires}

    def docker_auth_refusal(self, auth: str | None, *, push: bool = False) -> str | None:
        """What the sandbox's registry answers a pull (or push) with these `auths[...]["auth"]`:
        None when allowed; else the registry's error, as docker prints it. Credentials really
        expire `expiry_seconds` after they were handed out, and read-only ones cannot push."""
        rec = self._minted.get(hashlib.sha256((auth or "").encode()).hexdigest())
        if rec is None or (rec["expires_at"] is not None and self.clock() >= rec["expires_at"]):
            return "unauthorized: authentication required"
        if push and not rec["read_write"]:
            return "denied: requested access to the resource is denied"
        return None

    async def _tags(self, repo: str) -> list[dict]:
        try:
            return await self.registry_backend.tags(repo)
        except NotFound as e:
            raise APIError(404, str(e)) from None

    async def h_repositories(self, request):
        name = request.match_info["registry_name"]
        self._get(self.state.registry, name)
        repos = []
        for repo in await self.registry_backend.repositories():
            tags = await self._tags(repo)
            if not tags:
                continue
            newest = tags[0]
            same = [t["tag"] for t in tags if t["manifest_digest"] == newest["manifest_digest"]]
            repos.append(
                {
                    "registry_name": name,
                    "name": repo,
                    "tag_count": len(tags),
                    "manifest_count": len({t["manifest_digest"] for t in tags}),
                    "latest_manifest": {
                        "digest": newest["manifest_digest"],
                        "registry_name": name,
                        "repository": repo,
                        "compressed_size_bytes": newest["compressed_size_bytes"],
                        "size_bytes": newest.get("size_bytes", newest["compressed_size_bytes"]),
                        "updated_at": newest["updated_at"],
                        "tags": same,
                        "blobs": [],
                    },
                }
            )
        return self._paginate(request, repos, "repositories")

    async def h_repo_tags(self, request):
        name = request.match_info["registry_name"]
        repo = request.match_info["repository_name"]
        self._get(self.state.registry, name)
        tags = await self._tags(repo)
        if not tags and repo not in await self.registry_backend.repositories():
            raise APIError(404, f"repository {repo!r} not found")
        items = [
            {
                "registry_name": name,
                "repository": repo,
                "tag": t["tag"],
                "manifest_digest": t["manifest_digest"],
                "compressed_size_bytes": t["compressed_size_bytes"],
                "size_bytes": t.get("size_bytes", t["compressed_size_bytes"]),
                "updated_at": t["updated_at"],
            }
            for t in tags
        ]
        return self._paginate(request, items, "tags")

    async def h_repo_tag_delete(self, request):
        m = request.match_info
        self._get(self.state.registry, m["registry_name"])
        try:
            await self.registry_backend.delete_tag(m["repository_name"], m["repository_tag"])
        except NotFound as e:
            raise APIError(404, str(e)) from None
        return web.Response(status=204)

    # sandbox-only

    async def h_stats(self, request):
        return web.json_response(self.stats)

    async def h_faults_list(self, request):
        return web.json_response({"faults": [f.to_dict() for f in self.faults]})

    async def h_faults_add(self, request):
        body = await json_body(request)
        try:
            f = self.inject_fault(
                str(body["path_regex"]),
                int(body.get("status", 500)),
                method=body.get("method"),
                count=int(body.get("count", 1)),
                retry_after=body.get("retry_after"),
                after=bool(body.get("after", False)),
            )
        except (KeyError, ValueError, TypeError, re.error) as e:
            raise APIError(422, f"bad fault: {e}") from None
        return web.json_response({"fault": f.to_dict()}, status=201)

    async def h_faults_clear(self, request):
        self.faults.clear()
        return web.Response(status=204)

    async def h_sb_tags(self, request):
        repo = request.match_info["repository"]
        tags = await self.registry_backend.tags(repo)
        return web.json_response(
            {"tags": [public(t) | {"behaviour": t.get("_behaviour", "ok"), "extra": t.get("_extra", {})} for t in tags]}
        )

    async def h_sb_tag_put(self, request):
        if not isinstance(self.registry_backend, StateRegistry):
            raise APIError(422, "tags of a real registry are pushed with docker, not added here")
        body = await json_body(request)
        if not body.get("tag") or not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", str(body["tag"])):
            raise APIError(422, "tag must match [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
        if body.get("behaviour", "ok") not in BEHAVIOURS:
            raise APIError(422, f"behaviour must be one of {', '.join(BEHAVIOURS)}")
        rec = self.state.put_registry_tag(
            request.match_info["repository"],
            body["tag"],
            behaviour=body.get("behaviour", "ok"),
            manifest_digest=body.get("manifest_digest"),
            extra=body.get("extra") or {},
        )
        return web.json_response({"tag": public(rec) | {"behaviour": rec["_behaviour"]}}, status=201)
