"""The one place that talks to DigitalOcean (or the sandbox's local copy of its API).

    async with DOClient(api_url, token) as do:
        droplets = await do.list_droplets("zdd-app")

Reads (GET) go through one httpx client; writes go through pydo, imported on the first write.
Importing pydo's generated client costs ~80 MB of memory and up to 0.9 s, more than the console's
whole budget, and the console only ever reads; the few read paths are simple to send by hand (the
same paths and query parameters pydo 0.44 sends).

Both transports share `_call`, which
- turns any error answer into a CloudError subclass with DO's message and request id (pydo
  *returns* DO's error body for many 404s instead of raising: that is an error too);
- honours 429 `retry-after` (the per-minute burst limit: waits and retries, `max_retry_wait`
  seconds in all at most); a 429 without it is the hourly limit: it waits for `ratelimit-reset`
  once if that is within `max_retry_wait`, else stops at once saying when the budget comes back;
- retries on 5xx / no answer a few times, never a create: pydo's own retry policy is off
  (retry_total=0) because it re-sends POSTs, and creates re-list after a 5xx before deciding;
- records the `ratelimit-*` headers (`.rate_limit`) and counts HTTP requests (`.requests_made`).
The token is only in the transports' auth headers; it never appears in errors, reprs or logs.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import parse_qs, quote, urlsplit

import httpx

from zdd_tui.cloud.errors import (
    CloudError,
    ForbiddenError,
    NotFoundError,
    RateLimitedError,
    UnauthorizedError,
    UnreachableError,
    hint_for,
)
from zdd_tui.cloud.models import (
    Account,
    Action,
    DockerCredentials,
    Droplet,
    ForwardingRule,
    HealthCheck,
    LoadBalancer,
    RateLimit,
    Registry,
    RegistryTag,
    RegistryTier,
    Repository,
    Size,
    SSHKey,
)

if TYPE_CHECKING:
    from azure.core.rest import AsyncHttpResponse
    from pydo.aio import Client as PydoClient

log = logging.getLogger(__name__)

PER_PAGE = 200
MAX_PAGES = 10_000  # a guard against a server whose "next" link never ends
RETRYABLE = {500, 502, 503, 504}


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _parse_time(value: Any) -> datetime | None:
    if not value or not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00").replace(" ", "T"))
    except ValueError:
        return None


def _seg(value: Any) -> str:
    """One URL path segment, percent-encoded the way pydo does it."""
    return quote(str(value), safe="")


def _capture(pipeline_response, deserialized, headers):
    """pydo's `cls=` hook: keep the HTTP status and headers next to the body."""
    response = pipeline_response.http_response
    return response.status_code, deserialized, response.headers


class _NoAnswer(Exception):
    """A transport got no HTTP answer (refused, reset, timeout, TLS, DNS)."""


# ---- dict -> model -------------------------------------------------------------------------------


def droplet_from(d: dict) -> Droplet:
    def ip(kind: str) -> str | None:
        for n in (d.get("networks") or {}).get("v4") or []:
            if n.get("type") == kind:
                return n.get("ip_address")
        return None

    region = d.get("region")
    return Droplet(
        id=int(d["id"]),
        name=d["name"],
        status=d.get("status", ""),
        region=region.get("slug", "") if isinstance(region, dict) else str(region or ""),
        size=d.get("size_slug") or (d.get("size") or {}).get("slug", ""),
        public_ipv4=ip("public"),
        private_ipv4=ip("private"),
        tags=tuple(d.get("tags") or ()),
        created_at=_parse_time(d.get("created_at")),
    )


def health_check_from(h: dict) -> HealthCheck:
    return HealthCheck(
        protocol=h.get("protocol", "http"),
        port=int(h.get("port", 80)),
        path=h.get("path", "/"),
        check_interval_seconds=int(h.get("check_interval_seconds", 10)),
        response_timeout_seconds=int(h.get("response_timeout_seconds", 5)),
        unhealthy_threshold=int(h.get("unhealthy_threshold", 5)),
        healthy_threshold=int(h.get("healthy_threshold", 3)),
    )


def load_balancer_from(lb: dict) -> LoadBalancer:
    region = lb.get("region")
    return LoadBalancer(
        id=lb["id"],
        name=lb.get("name", ""),
        ip=lb.get("ip") or None,
        status=lb.get("status", ""),
        region=region.get("slug", "") if isinstance(region, dict) else str(region or ""),
        tag=lb.get("tag") or None,
        droplet_ids=tuple(int(i) for i in lb.get("droplet_ids") or ()),
        forwarding_rules=tuple(
            ForwardingRule(r["entry_protocol"], int(r["entry_port"]), r["target_protocol"], int(r["target_port"]))
            for r in lb.get("forwarding_rules") or ()
        ),
        health_check=health_check_from(lb.get("health_check") or {}),
        size_unit=int(lb.get("size_unit") or 1),
        raw=lb,
    )


def load_balancer_body(lb: LoadBalancer) -> dict:
    """The whole object for a create or PUT (PUT replaces everything, so nothing may be left out)."""
    body: dict[str, Any] = {
        "name": lb.name,
        "region": lb.region,
        "size_unit": lb.size_unit,
        "forwarding_rules": [
            {
                "entry_protocol": r.entry_protocol,
                "entry_port": r.entry_port,
                "target_protocol": r.target_protocol,
                "target_port": r.target_port,
            }
            for r in lb.forwarding_rules
        ],
        "health_check": {
            "protocol": lb.health_check.protocol,
            "port": lb.health_check.port,
            "path": lb.health_check.path,
            "check_interval_seconds": lb.health_check.check_interval_seconds,
            "response_timeout_seconds": lb.health_check.response_timeout_seconds,
            "unhealthy_threshold": lb.health_check.unhealthy_threshold,
            "healthy_threshold": lb.health_check.healthy_threshold,
        },
    }
    # A tag-based LB and droplet_ids are exclusive on DigitalOcean.
    if lb.tag:
        body["tag"] = lb.tag
    else:
        body["droplet_ids"] = list(lb.droplet_ids)
    return body


# Fields DigitalOcean sets itself: never sent back in a PUT.
LB_READ_ONLY = ("id", "ip", "ipv6", "status", "created_at")


def load_balancer_put_body(lb: LoadBalancer) -> dict:
    """The PUT body for `lb`: the object as DigitalOcean returned it (`lb.raw`), with only what
    zdd-tui owns replaced (name, forwarding rules' ports and protocols, health check, size, tag or
    droplets). Everything else (sticky sessions, firewall, HTTPS redirect, certificates, VPC,
    project, ...) goes back unchanged, because a PUT replaces the whole load balancer."""
    if not lb.raw:
        return load_balancer_body(lb)
    body = {k: v for k, v in lb.raw.items() if k not in LB_READ_ONLY}
    ours = load_balancer_body(lb)
    region = body.get("region")
    body["region"] = region.get("slug", lb.region) if isinstance(region, dict) else (region or lb.region)
    body["name"] = ours["name"]
    if "size_unit" in lb.raw or "size" not in body:  # else sized by slug (older ones): kept as it is
        body.pop("size", None)
        body["size_unit"] = ours["size_unit"]
    old_rules = {(r.get("entry_protocol"), r.get("entry_port")): r for r in lb.raw.get("forwarding_rules") or ()}
    body["forwarding_rules"] = [
        dict(old_rules.get((r["entry_protocol"], r["entry_port"]), {}), **r) for r in ours["forwarding_rules"]
    ]
    body["health_check"] = dict(lb.raw.get("health_check") or {}, **ours["health_check"])
    body.pop("tag", None)
    body.pop("droplet_ids", None)
    body.update({k: ours[k] for k in ("tag", "droplet_ids") if k in ours})
    return body


# The per-droplet LB health metric's labels are not in DigitalOcean's spec; what names the droplet
# is read from the first of these present. DigitalOcean's backend metrics name it `server`.
LB_HEALTH_LABELS = ("droplet_id", "server", "host_id", "droplet", "instance")


def lb_health_from(body: Any, resolve: Callable[[str], int | None]) -> dict[int, bool | None]:
    """droplet id -> True (healthy) / False (unhealthy) / None (unknown) from a metric answer.

    The value scale is not specified either: 0/1 and 0-100 (percent of checks passing) are both
    read. The newest sample counts: all checks passing is healthy, none is unhealthy; a part
    (a droplet changing state within the sample), NaN, or a sample that cannot be read is unknown.
    A droplet without a series (a new LB has none) is left out: the caller shows it as unknown.
    """
    series = ((body or {}).get("data") or {}).get("result") or [] if isinstance(body, dict) else []
    latest: dict[int, float | None] = {}
    for one in series:
        if not isinstance(one, dict):
            continue
        labels = one.get("metric") or {}
        did = None
        for key in LB_HEALTH_LABELS:
            if key in labels:
                name = str(labels[key]).strip()
                did = resolve(name)
                if did is None and name.count(":") == 1:  # "address:port"
                    did = resolve(name.split(":", 1)[0])
                break
        if did is None:
            continue
        values = one.get("values") or []
        try:
            value = float(values[-1][1])
        except (TypeError, ValueError, IndexError):
            value = None
        latest[did] = value if value is None or value == value else None  # NaN is no reading
    percent = any(v is not None and v > 1 for v in latest.values())
    full = 100.0 if percent else 1.0
    out: dict[int, bool | None] = {}
    for did, value in latest.items():
        if value is None:
            out[did] = None
        elif value >= full:
            out[did] = True
        elif value <= 0:
            out[did] = False
        else:
            out[did] = None
    return out


def registry_from(r: dict) -> Registry:
    tier = ((r.get("subscription") or {}).get("tier") or {}).get("slug")
    return Registry(name=r["name"], region=r.get("region"), created_at=_parse_time(r.get("created_at")), tier=tier)


def tag_from(repository: str, t: dict) -> RegistryTag:
    return RegistryTag(
        repository=t.get("repository") or repository,
        tag=t["tag"],
        manifest_digest=t.get("manifest_digest", ""),
        compressed_size_bytes=int(t.get("compressed_size_bytes") or 0),
        updated_at=_parse_time(t.get("updated_at")),
    )


def ssh_key_from(k: dict) -> SSHKey:
    return SSHKey(
        id=int(k["id"]),
        name=k.get("name", ""),
        fingerprint=k.get("fingerprint", ""),
        public_key=k.get("public_key", ""),
    )


def action_from(a: dict) -> Action:
    return Action(id=int(a["id"]), status=a.get("status", ""), type=a.get("type", ""))


# ---- the client ----------------------------------------------------------------------------------


class DOClient:
    """Async DigitalOcean client. Use as `async with DOClient(url, token) as do:`.

    `allow_insecure=True` permits plain http to a non-loopback host (lab network namespaces);
    plain http to 127.0.0.0/8 or localhost is always allowed (the sandbox).
    """

    def __init__(
        self,
        api_url: str,
        token: str,
        *,
        max_retry_wait: float = 60,
        max_retries: int = 3,
        timeout: float = 60,
        allow_insecure: bool = False,
        retry_backoff: float = 0.25,
        recheck_delay: float = 1.0,
        sleep: Callable[[float], Awaitable[None]] | None = None,
        clock: Callable[[], float] | None = None,
    ):
        if not token:
            raise UnauthorizedError(
                "no DigitalOcean token", "run `zdd-tui login` (or set DIGITALOCEAN_TOKEN)", status=401
            )
        self.api_url = api_url.rstrip("/")
        self.__token = token
        self.max_retry_wait = max_retry_wait
        self.max_retries = max_retries
        self.timeout = timeout
        self.retry_backoff = retry_backoff  # first pause before re-reading after a 5xx; doubles
        self.recheck_delay = recheck_delay  # pause before re-listing after a create's 5xx
        self._sleep = sleep or asyncio.sleep
        self._clock = clock or time.time  # wall clock: `ratelimit-reset` is an epoch
        # id, name and addresses of every droplet seen -> its id: the LB health metric may name
        # a droplet by any of them.
        self._droplet_keys: dict[str, int] = {}
        self._registry_options: dict | None = None
        self.rate_limit: RateLimit | None = None
        self.requests_made = 0
        self.waited_seconds = 0.0  # time spent waiting on 429 retry-after, in total
        parts = urlsplit(self.api_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise CloudError(
                f"the DigitalOcean API URL {self.api_url!r} is not an http(s) URL",
                "set digitalocean.api_url in zdd.yaml to https://api.digitalocean.com or the sandbox's URL",
            )
        self._plain_http = parts.scheme == "http"
        if self._plain_http and not (_is_loopback(parts.hostname) or allow_insecure):
            raise CloudError(
                f"refusing to send the DigitalOcean token over plain http to {parts.hostname}",
                "use https, or a sandbox API on 127.0.0.1",
            )
        self._http: httpx.AsyncClient | None = None  # reads; made by open()
        self._pydo: PydoClient | None = None  # writes; made on the first write

    def __repr__(self) -> str:
        return f"DOClient(api_url={self.api_url!r}, requests_made={self.requests_made})"

    # ---- lifecycle ---------------------------------------------------------------------------

    async def open(self) -> DOClient:
        if self._http is None:
            # Plain http (the sandbox, a lab API): no TLS can happen, since redirects are not
            # followed there, so no certificate store is loaded (~20 ms of the console's start).
            # Over https, redirects are followed as pydo does (httpx drops the token when a
            # redirect leaves the origin) and certificates are verified.
            self._http = httpx.AsyncClient(
                base_url=self.api_url,
                headers={"Authorization": f"Bearer {self.__token}", "Accept": "application/json"},
                timeout=httpx.Timeout(self.timeout, connect=min(self.timeout, 10)),
                follow_redirects=not self._plain_http,
                verify=not self._plain_http,
                event_hooks={"response": [self._on_httpx_response]},
            )
        return self

    async def close(self) -> None:
        http, pydo, self._http, self._pydo = self._http, self._pydo, None, None
        if http is not None:
            await http.aclose()
        if pydo is not None:
            await pydo.close()

    async def __aenter__(self) -> DOClient:
        return await self.open()

    async def __aexit__(self, *exc) -> None:
        await self.close()

    @property
    def pydo(self) -> PydoClient:
        """pydo's client, for writes: built, and pydo imported, on first use (see the docstring)."""
        if self._http is None:
            raise RuntimeError("DOClient is not open: use `async with DOClient(...)`")
        if self._pydo is None:
            from azure.core.credentials import AzureKeyCredential
            from azure.core.pipeline.policies import AzureKeyCredentialPolicy
            from pydo.aio import Client

            kwargs: dict[str, Any] = {
                "endpoint": self.api_url,
                "retry_total": 0,  # pydo would re-send POSTs on 5xx; _call retries what is safe
                "raw_response_hook": lambda pipeline_response: self._on_response(
                    pipeline_response.http_response.headers
                ),
                "timeout": self.timeout,
                "connection_timeout": min(self.timeout, 10),
                "read_timeout": self.timeout,
            }
            if self._plain_http:
                # pydo's bearer policy refuses non-TLS URLs; the key policy sends the same header.
                kwargs["authentication_policy"] = AzureKeyCredentialPolicy(
                    AzureKeyCredential(self.__token), "Authorization", prefix="Bearer"
                )
            self._pydo = Client(self.__token, **kwargs)
        return self._pydo

    # ---- the call wrapper, shared by both transports ------------------------------------------

    def _on_response(self, headers: Any) -> None:
        """Every HTTP answer, on either transport (retries included)."""
        self.requests_made += 1
        try:
            if headers.get("ratelimit-limit") is not None:
                self.rate_limit = RateLimit(
                    limit=int(headers["ratelimit-limit"]),
                    remaining=int(headers.get("ratelimit-remaining", 0)),
                    reset_epoch=int(float(headers.get("ratelimit-reset", 0))),
                )
        except (TypeError, ValueError):
            pass

    async def _on_httpx_response(self, response: httpx.Response) -> None:
        self._on_response(response.headers)

    def _redact(self, text: str) -> str:
        return text.replace(self.__token, "[token]") if self.__token else text

    def _error(self, what: str, status: int | None, body: Any, headers: Any = None) -> CloudError:
        do_id = message = request_id = None
        if isinstance(body, dict):
            do_id, message, request_id = body.get("id"), body.get("message"), body.get("request_id")
        if not request_id and headers is not None:
            request_id = headers.get("x-request-id")
        text = f"{what}: DigitalOcean answered {status}"
        if message:
            text += f": {message}"
        text = self._redact(text)
        cls = CloudError
        if status == 404:
            cls = NotFoundError
        elif status == 403:
            cls = ForbiddenError
        elif status == 401:
            cls = UnauthorizedError
        elif status == 429:
            cls = RateLimitedError
        return cls(text, hint_for(status, do_id), status=status, do_id=do_id, request_id=request_id)

    async def _call(
        self, what: str, send: Callable[[], Awaitable[tuple[int, Any, Any]]], *, create: bool = False
    ) -> Any:
        """`send()` makes one HTTP request and returns (status, body, headers) for any answer, or
        raises _NoAnswer. Returns the body of a success; raises CloudError otherwise.

        `create=True`: never retry on 5xx or a lost connection (the create may have happened);
        the caller re-lists and decides. 429 is always safe to retry: DO did not process it.
        """
        attempt = 0
        waited = 0.0
        hour_waited = False
        while True:
            attempt += 1
            try:
                status, body, headers = await send()
            except _NoAnswer as e:
                if not create and attempt <= self.max_retries:
                    await self._sleep(min(self.retry_backoff * 2 ** (attempt - 1), 4))
                    continue
                raise UnreachableError(
                    self._redact(f"{what}: no answer from {self.api_url} ({e})"),
                    "check the network and digitalocean.api_url; for the sandbox, is `zdd-tui sandbox up` running?",
                ) from None
            if status < 400:
                return body
            if status == 429:
                retry_after = _retry_after(headers)
                if retry_after is None:  # the hourly limit: wait for its reset once, if soon enough
                    wait, err = self._hourly_limit(what, body, headers)
                    if wait is None or hour_waited or waited + wait > self.max_retry_wait:
                        raise err
                    log.info("%s: hourly rate limit, waiting %.0f s for it to reset", what, wait)
                    hour_waited = True
                    waited += wait
                    self.waited_seconds += wait
                    await self._sleep(wait)
                    continue
                if waited + retry_after <= self.max_retry_wait:
                    log.info("%s: rate limited, retrying in %.0f s", what, retry_after)
                    waited += retry_after
                    self.waited_seconds += retry_after
                    await self._sleep(retry_after)
                    continue
                err = self._error(what, status, body, headers)
                if isinstance(err, RateLimitedError):  # always, for a 429
                    err.retry_after = retry_after
                raise err
            if status in RETRYABLE and not create and attempt <= self.max_retries:
                await self._sleep(min(self.retry_backoff * 2 ** (attempt - 1), 4))
                continue
            raise self._error(what, status, body, headers)

    def _hourly_limit(self, what: str, body: Any, headers: Any) -> tuple[float | None, CloudError]:
        """A 429 without `retry-after`: the hour's 5,000 requests are used up. They come back one
        by one as the oldest turn an hour old (`ratelimit-reset`), so retrying every second would
        only spend the first one that does. Returns (seconds until then, or None when the answer
        does not say; the error that says when)."""
        try:
            reset = float(headers.get("ratelimit-reset")) if headers is not None else None
        except (TypeError, ValueError):
            reset = None
        wait = None if reset is None else max(0.0, reset - self._clock()) + 1
        request_id = (body.get("request_id") if isinstance(body, dict) else None) or (
            headers.get("x-request-id") if headers is not None else None)
        text = f"{what}: DigitalOcean answered 429: its hourly request limit is used up"
        hint = "wait up to an hour and retry; something else may be using the same token heavily"
        if reset is not None:
            at = datetime.fromtimestamp(reset).astimezone()
            minutes = max(1, round((wait or 0) / 60))
            text += f" until {at:%H:%M:%S %Z} (in about {minutes} min)"
            hint = (f"retry after {at:%H:%M:%S %Z}: requests come back one by one as the oldest turn an hour old; "
                    "something else may be using the same token heavily")
        err = RateLimitedError(self._redact(text), hint, status=429, do_id="too_many_requests",
                               request_id=request_id, retry_after=wait, reset_epoch=reset)
        return wait, err

    async def _read(self, what: str, path: str, **params: Any) -> Any:
        """GET `path` (with query `params`) through httpx; the body of a success."""
        if self._http is None:
            raise RuntimeError("DOClient is not open: use `async with DOClient(...)`")
        http = self._http

        async def send() -> tuple[int, Any, Any]:
            try:
                response = await http.get(path, params=params)
            except httpx.TransportError as e:
                raise _NoAnswer(f"{type(e).__name__}: {e}" if str(e) else type(e).__name__) from None
            try:
                body = response.json() if response.content else None
            except ValueError:
                if response.is_success:  # not DO's answer (pydo fails these too)
                    raise self._error(what, response.status_code, None, response.headers) from None
                body = None
            return response.status_code, body, response.headers

        return await self._call(what, send)

    async def _write(
        self, what: str, fn: Callable[..., Awaitable[Any]], *args: Any, create: bool = False, **kwargs: Any
    ) -> Any:
        """One pydo operation (`fn`, a method of `self.pydo`); the body of a success."""
        # Already imported with pydo by `self.pydo`, which made `fn`.
        from azure.core.exceptions import HttpResponseError, ServiceRequestError, ServiceResponseError

        async def send() -> tuple[int, Any, Any]:
            try:
                return await fn(*args, cls=_capture, **kwargs)  # 404s may come back as a body
            except HttpResponseError as e:
                # pydo's operations raise with the azure.core.rest response they got (typed as a
                # protocol of just reason/status/text on the exception).
                resp = cast("AsyncHttpResponse | None", e.response)
                status = e.status_code or (resp.status_code if resp is not None else None) or 500
                headers = resp.headers if resp is not None else {}
                try:
                    body = resp.json() if resp is not None else None
                except Exception:  # noqa: BLE001 - an unreadable error body (not JSON, not read) is no body
                    body = None
                if status < 400:  # a success pydo could not read (not JSON), as in _read
                    raise self._error(what, status, body, headers) from None
                return status, body, headers
            except (ServiceRequestError, ServiceResponseError) as e:
                raise _NoAnswer(f"{type(e).__name__}: {getattr(e, 'message', e)}") from None

        return await self._call(what, send, create=create)

    async def _list_all(self, what: str, path: str, key: str, **params: Any) -> list[dict]:
        """Every page of a list (per_page=200), following links.pages.next."""
        items: list[dict] = []
        page = 1
        for _ in range(MAX_PAGES):
            body = await self._read(what, path, per_page=PER_PAGE, page=page, **params) or {}
            items.extend(body.get(key) or [])
            nxt = ((body.get("links") or {}).get("pages") or {}).get("next")
            if not nxt:
                break
            try:
                next_page = int(parse_qs(urlsplit(nxt).query).get("page", ["0"])[0])
            except ValueError:
                break
            if next_page <= page:
                break
            page = next_page
        return items

    # ---- account -----------------------------------------------------------------------------

    async def account(self) -> Account:
        body = await self._read("read the account", "/v2/account")
        a = body["account"]
        return Account(
            email=a.get("email", ""),
            uuid=a.get("uuid", ""),
            status=a.get("status", ""),
            droplet_limit=int(a.get("droplet_limit", 0)),
        )

    # ---- droplets ----------------------------------------------------------------------------

    async def list_droplets(self, tag: str | None = None) -> list[Droplet]:
        kw = {"tag_name": tag} if tag else {}
        what = f"list droplets{f' tagged {tag}' if tag else ''}"
        items = await self._list_all(what, "/v2/droplets", "droplets", **kw)
        return [self._seen(droplet_from(d)) for d in items]

    def _seen(self, d: Droplet) -> Droplet:
        """Remember how the droplet can be named (id, name, addresses), for the LB health metric."""
        for key in (str(d.id), d.name, d.public_ipv4, d.private_ipv4):
            if key:
                self._droplet_keys[key] = d.id
        return d

    def _droplet_by_key(self, key: str) -> int | None:
        return int(key) if key.isdigit() else self._droplet_keys.get(key)

    async def get_droplet(self, droplet_id: int) -> Droplet:
        body = await self._read(f"read droplet {droplet_id}", f"/v2/droplets/{int(droplet_id)}")
        return self._seen(droplet_from(body["droplet"]))

    async def find_droplets_by_name(self, name: str) -> list[Droplet]:
        items = await self._list_all(f"find droplet {name}", "/v2/droplets", "droplets", name=name)
        return [droplet_from(d) for d in items if d.get("name") == name]

    async def _by_names(self, names: Iterable[str], tag: str | None) -> dict[str, Droplet]:
        wanted = set(names)
        if tag:
            found = await self.list_droplets(tag)
        else:
            found = [d for n in wanted for d in await self.find_droplets_by_name(n)]
        out: dict[str, Droplet] = {}
        for d in sorted(found, key=lambda d: d.id):
            if d.name in wanted and d.name not in out:
                out[d.name] = d
        return out

    async def create_droplets(
        self,
        names: Iterable[str],
        *,
        region: str,
        size: str,
        image: str,
        ssh_key_ids: Iterable[int | str] = (),
        tags: Iterable[str] = (),
        user_data: str | None = None,
    ) -> list[Droplet]:
        """Create the droplets that do not exist yet (by name); returns all of them in `names` order.

        Idempotent: names that exist (with the first tag, when given) are not created again. After a
        5xx or a lost answer the list is read again first, and only names still missing are sent
        once more (one more attempt), so a create that happened despite the error is never doubled.
        """
        names = list(dict.fromkeys(names))
        tags = list(tags)
        tag = tags[0] if tags else None
        existing = await self._by_names(names, tag)
        last_error: CloudError | None = None
        for _ in range(2):
            missing = [n for n in names if n not in existing]
            if not missing:
                break
            for i in range(0, len(missing), 10):  # DO takes at most 10 names per request
                chunk = missing[i : i + 10]
                body: dict[str, Any] = {"names": chunk, "region": region, "size": size, "image": image, "tags": tags}
                if ssh_key_ids:
                    body["ssh_keys"] = list(ssh_key_ids)
                if user_data:
                    body["user_data"] = user_data
                try:
                    res = await self._write(
                        f"create droplets {', '.join(chunk)}", self.pydo.droplets.create, body, create=True
                    )
                except (UnreachableError, CloudError) as e:
                    if isinstance(e, UnreachableError) or (e.status or 0) >= 500:
                        last_error = e
                        break  # re-list before deciding anything else
                    raise
                made = res.get("droplets") or ([res["droplet"]] if res.get("droplet") else [])
                # DigitalOcean names one create action per droplet, in the order of the droplets.
                actions = [a.get("id") for a in (res.get("links") or {}).get("actions") or ()
                           if isinstance(a, dict) and a.get("rel", "create") == "create"]
                for i, d in enumerate(made):
                    dm = self._seen(droplet_from(d))
                    aid = actions[i] if len(actions) == len(made) else None
                    if aid is not None:
                        dm = replace(dm, create_action_id=int(aid))
                    existing.setdefault(dm.name, dm)
            else:
                continue
            # A create failed with 5xx/no answer: see what really exists now.
            await self._sleep(self.recheck_delay)
            existing.update({k: v for k, v in (await self._by_names(names, tag)).items() if k not in existing})
        missing = [n for n in names if n not in existing]
        if missing:
            raise last_error or CloudError(f"droplets {', '.join(missing)} were not created")
        return [existing[n] for n in names]

    async def delete_droplet(self, droplet_id: int, *, missing_ok: bool = False) -> None:
        try:
            await self._write(f"delete droplet {droplet_id}", self.pydo.droplets.destroy, int(droplet_id))
        except NotFoundError:
            if not missing_ok:
                raise

    # ---- load balancer -----------------------------------------------------------------------

    async def list_load_balancers(self) -> list[LoadBalancer]:
        items = await self._list_all("list load balancers", "/v2/load_balancers", "load_balancers")
        return [load_balancer_from(lb) for lb in items]

    async def find_load_balancer(self, name: str) -> LoadBalancer | None:
        for lb in await self.list_load_balancers():
            if lb.name == name:
                return lb
        return None

    async def get_load_balancer(self, lb_id: str) -> LoadBalancer:
        body = await self._read(f"read load balancer {lb_id}", f"/v2/load_balancers/{_seg(lb_id)}")
        return load_balancer_from(body["load_balancer"])

    async def create_load_balancer(
        self,
        name: str,
        *,
        region: str,
        tag: str,
        entry_port: int,
        target_port: int,
        health_check: HealthCheck,
        size_unit: int = 1,
        entry_protocol: str = "http",
        target_protocol: str = "http",
    ) -> LoadBalancer:
        """Create a tag-based LB, or return the one of that name if it exists (never a second one)."""
        found = await self.find_load_balancer(name)
        if found is not None:
            return found
        lb = LoadBalancer(
            id="",
            name=name,
            ip=None,
            status="new",
            region=region,
            tag=tag,
            droplet_ids=(),
            forwarding_rules=(ForwardingRule(entry_protocol, entry_port, target_protocol, target_port),),
            health_check=health_check,
            size_unit=size_unit,
        )
        try:
            body = await self._write(
                f"create load balancer {name}", self.pydo.load_balancers.create, load_balancer_body(lb), create=True
            )
        except CloudError as e:
            if isinstance(e, UnreachableError) or (e.status or 0) >= 500:
                await self._sleep(self.recheck_delay)
                found = await self.find_load_balancer(name)
                if found is not None:
                    return found
            raise
        return load_balancer_from(body["load_balancer"])

    async def update_load_balancer(self, lb: LoadBalancer, **changes: Any) -> LoadBalancer:
        """PUT the whole LB: `lb` as DigitalOcean returned it, with `changes` (dataclass fields)
        applied; settings zdd-tui does not model go back as they were (see load_balancer_put_body)."""
        new = replace(lb, **changes) if changes else lb
        body = await self._write(
            f"update load balancer {lb.name}", self.pydo.load_balancers.update, lb.id, load_balancer_put_body(new)
        )
        return load_balancer_from(body["load_balancer"])

    async def lb_droplet_health(self, lb_id: str, *, window_seconds: int = 300) -> dict[int, bool | None]:
        """droplet id -> True healthy / False unhealthy / None unknown, per the LB's newest
        health-check sample (advisory; it lags). Droplets with no series are left out (unknown).
        A droplet named by name or address is matched against the droplets this client has read."""
        end = int(self._clock())
        body = await self._read(
            "read the load balancer's droplet health",
            "/v2/monitoring/metrics/load_balancer/droplets_health_checks",
            lb_id=lb_id,
            start=str(end - window_seconds),
            end=str(end),
        )
        return lb_health_from(body, self._droplet_by_key)

    # ---- registry ----------------------------------------------------------------------------

    async def list_registries(self) -> list[Registry]:
        """The account's registries (several on a Professional plan); [] when it has none (a 404
        on the list means none, as the older single-registry API answers)."""
        try:
            body = await self._read("list the container registries", "/v2/registries")
        except NotFoundError:
            return []
        return [registry_from(r) for r in (body or {}).get("registries") or []]

    async def get_registry(self, name: str | None = None) -> Registry | None:
        """The registry named `name` (without a name: the account's only or first one); None when
        there is none."""
        regs = await self.list_registries()
        if name is not None:
            regs = [r for r in regs if r.name == name]
        return regs[0] if regs else None

    async def validate_registry_name(self, name: str) -> None:
        """CloudError (409, with a hint) when the name is not available; registry names are global."""
        try:
            await self._write(f"check registry name {name}", self.pydo.registries.validate_name, {"name": name})
        except CloudError as e:
            raise _registry_error(e, name) from None

    async def create_registry(self, name: str, tier: str = "starter", region: str | None = None) -> Registry:
        found = await self.get_registry(name)
        if found is not None:
            return found
        body: dict[str, Any] = {"name": name, "subscription_tier_slug": tier}
        if region:
            body["region"] = region
        try:
            res = await self._write(f"create registry {name}", self.pydo.registries.create, body, create=True)
        except CloudError as e:
            if isinstance(e, UnreachableError) or (e.status or 0) >= 500:
                await self._sleep(self.recheck_delay)
                found = await self.get_registry(name)
                if found is not None:
                    return found
            raise _registry_error(e, name) from None
        reg = registry_from(res["registry"])
        return reg if reg.tier else replace(reg, tier=tier)

    async def list_repositories(self, registry: str) -> list[Repository]:
        items = await self._list_all(
            f"list repositories of registry {registry}",
            f"/v2/registries/{_seg(registry)}/repositoriesV2",
            "repositories",
        )
        out = []
        for r in items:
            latest = r.get("latest_manifest") or {}
            out.append(
                Repository(
                    name=r["name"],
                    tag_count=int(r.get("tag_count") or 0),
                    manifest_count=int(r.get("manifest_count") or 0),
                    latest_digest=latest.get("digest"),
                    latest_tags=tuple(latest.get("tags") or ()),
                    updated_at=_parse_time(latest.get("updated_at")),
                )
            )
        return out

    async def list_tags(self, registry: str, repository: str) -> list[RegistryTag]:
        """All tags of a repository, newest first."""
        items = await self._list_all(
            f"list tags of {registry}/{repository}",
            f"/v2/registries/{_seg(registry)}/repositories/{_seg(repository)}/tags",
            "tags",
        )
        tags = [tag_from(repository, t) for t in items]
        epoch = datetime.fromtimestamp(0).astimezone()
        tags.sort(key=lambda t: t.tag)
        tags.sort(key=lambda t: t.updated_at or epoch, reverse=True)
        return tags

    async def delete_tag(self, registry: str, repository: str, tag: str) -> None:
        await self._write(
            f"delete tag {repository}:{tag}", self.pydo.registries.delete_repository_tag, registry, repository, tag
        )

    async def docker_credentials(
        self, registry: str, *, read_write: bool = False, expiry_seconds: int = 600
    ) -> DockerCredentials:
        """Short-lived docker config.json `auths` (read-only unless asked). Never log the result."""
        body = await self._read(
            f"get docker credentials for registry {registry}",
            f"/v2/registries/{_seg(registry)}/docker-credentials",
            read_write="true" if read_write else "false",
            expiry_seconds=str(int(expiry_seconds)),
        )
        return DockerCredentials(
            auths=dict((body or {}).get("auths") or {}), expires_in_seconds=int(expiry_seconds), read_write=read_write
        )

    # ---- ssh keys, tags, actions -------------------------------------------------------------

    async def list_ssh_keys(self) -> list[SSHKey]:
        items = await self._list_all("list SSH keys", "/v2/account/keys", "ssh_keys")
        return [ssh_key_from(k) for k in items]

    async def create_ssh_key(self, name: str, public_key: str) -> SSHKey:
        """Add a public key to the account, or return the account's key with the same key material."""
        material = " ".join(public_key.split()[:2])
        for k in await self.list_ssh_keys():
            if " ".join(k.public_key.split()[:2]) == material:
                return k
        body = await self._write(
            f"add SSH key {name}", self.pydo.ssh_keys.create, {"name": name, "public_key": public_key.strip()}
        )
        return ssh_key_from(body["ssh_key"])

    async def create_tag(self, name: str) -> None:
        await self._write(f"create tag {name}", self.pydo.tags.create, {"name": name})

    async def tag_resources(self, tag: str, droplet_ids: Iterable[int]) -> None:
        resources = [{"resource_id": str(i), "resource_type": "droplet"} for i in droplet_ids]
        await self._write(f"tag droplets with {tag}", self.pydo.tags.assign_resources, tag, {"resources": resources})

    async def untag_resources(self, tag: str, droplet_ids: Iterable[int]) -> None:
        resources = [{"resource_id": str(i), "resource_type": "droplet"} for i in droplet_ids]
        await self._write(f"remove tag {tag} from droplets", self.pydo.tags.unassign_resources, tag,
                          {"resources": resources})

    async def lb_add_droplets(self, lb_id: str, droplet_ids: Iterable[int]) -> None:
        """POST /v2/load_balancers/{id}/droplets (an LB by droplet ids; a tag-based one follows its tag)."""
        await self._write(f"add droplets to load balancer {lb_id}", self.pydo.load_balancers.add_droplets, lb_id,
                          {"droplet_ids": [int(i) for i in droplet_ids]})

    async def lb_remove_droplets(self, lb_id: str, droplet_ids: Iterable[int]) -> None:
        """DELETE /v2/load_balancers/{id}/droplets."""
        await self._write(f"remove droplets from load balancer {lb_id}", self.pydo.load_balancers.remove_droplets,
                          lb_id, {"droplet_ids": [int(i) for i in droplet_ids]})

    async def get_action(self, action_id: int) -> Action:
        body = await self._read(f"read action {action_id}", f"/v2/actions/{int(action_id)}")
        return action_from(body["action"])

    async def wait_action(self, action_id: int, *, timeout: float = 300, interval: float = 2) -> Action:
        """Poll until the action completes; CloudError if it errors or takes longer than `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            a = await self.get_action(action_id)
            if a.status == "completed":
                return a
            if a.status == "errored":
                raise CloudError(
                    f"DigitalOcean action {a.id} ({a.type}) failed", "see the action in the DigitalOcean control panel"
                )
            if time.monotonic() >= deadline:
                raise CloudError(
                    f"DigitalOcean action {a.id} ({a.type}) still {a.status} after {timeout:.0f} s",
                    "retry later; the action may still finish",
                )
            await self._sleep(interval)

    # ---- prices for the setup wizard ---------------------------------------------------------

    async def list_sizes(self) -> list[Size]:
        """Every droplet size with its monthly price, the regions offering it and availability."""
        items = await self._list_all("list droplet sizes", "/v2/sizes", "sizes")
        return [
            Size(
                slug=s["slug"],
                price_monthly=float(s.get("price_monthly") or 0),
                regions=tuple(s.get("regions") or ()),
                available=bool(s.get("available", True)),
            )
            for s in items
        ]

    async def sizes(self) -> dict[str, float]:
        """Droplet size slug -> monthly price in USD."""
        return {s.slug: s.price_monthly for s in await self.list_sizes()}

    async def _registry_options_body(self) -> dict:
        if self._registry_options is None:
            self._registry_options = await self._read("read registry options", "/v2/registries/options") or {}
        return self._registry_options

    async def registry_regions(self) -> list[str]:
        """The regions DigitalOcean offers container registries in (`available_regions`)."""
        body = await self._registry_options_body()
        return [str(r) for r in (body.get("options") or {}).get("available_regions") or []]

    async def registry_options(self) -> list[RegistryTier]:
        body = await self._registry_options_body()
        tiers = ((body or {}).get("options") or {}).get("subscription_tiers") or []
        return [
            RegistryTier(
                slug=t.get("slug", ""),
                name=t.get("name", ""),
                monthly_price_usd=int(t.get("monthly_price_in_cents") or 0) / 100,
                included_repositories=int(t.get("included_repositories") or 0),
                included_storage_bytes=int(t.get("included_storage_bytes") or 0),
                eligible=bool(t.get("eligible", True)),
            )
            for t in tiers
        ]


def _registry_error(e: CloudError, name: str) -> CloudError:
    """DigitalOcean's registry refusals with what to do about each."""
    if e.status == 409:
        e.hint = (f"the registry name {name!r} is taken (registry names are global across DigitalOcean): "
                  "choose another registry.name in zdd.yaml")
    elif e.status == 422 and "already" in (e.message or "").lower():
        e.hint = ("the account already has a container registry and its plan allows one: set registry.name in "
                  "zdd.yaml to that registry (`zdd-tui setup` lists it), or move to the Professional plan")
    return e


def _retry_after(headers: Any) -> float | None:
    """Seconds a 429's `retry-after` asks for; None when it has none (DigitalOcean's hourly limit)."""
    value = headers.get("retry-after") if headers is not None else None
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return 1.0
