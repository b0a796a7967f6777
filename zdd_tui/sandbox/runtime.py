"""`SandboxRuntime`: the engine's HostRuntime for a sandbox droplet.

Container and state-file operations go to the sandbox's host agent (`/sandbox/hosts/<name>/...`
on the sandbox API, bearer token); admin and health calls go straight to the host's address, as
the SSH runtime reaches them through an SSH channel on a real droplet. Health probes carry
`X-Zdd-Probe: zdd` so the service does not count them as load-balancer checks.

It is also a `SwapHost` (local-swap): the proxy and the slot containers are the agent's; the
proxy's ping and its read-only router API are read straight from `<address>:<proxy.port>`,
slot health straight from `<address>:<slot port>`.
"""

from __future__ import annotations

import asyncio
import functools
import json
import ssl
import time
from collections.abc import Callable
from typing import Any

import httpx

from zdd_tui.app_secrets import SecretEnv
from zdd_tui.cloud.models import PULL_CREDENTIALS_SECONDS, Droplet
from zdd_tui.config import Config
from zdd_tui.proxy.traefik import METRICS_PATH, PING_PATH, ROUTER_PATH, active_slot_from_router
from zdd_tui.rollout.interfaces import (
    ContainerInfo,
    HealthProbe,
    HostUnreachable,
    ImageInfo,
    ImageNotFound,
    ProxyStatus,
    RuntimeFailure,
    ServiceAdmin,
)
from zdd_tui.traffic import MAX_TEXT, ProxyCounters, parse_metrics

PROBE_HEADER = {"X-Zdd-Probe": "zdd"}


def sandbox_token(config: Config) -> str:
    """The sandbox's throwaway API token (`<state_dir>/token`), through the credential chain,
    which gives a sandbox config its own token and never a real one from the environment."""
    from zdd_tui.secrets import get_token

    return get_token(config)


def _container(d: dict) -> ContainerInfo:
    return ContainerInfo(
        name=d["name"],
        image_ref=d["image_ref"],
        tag=d["tag"],
        digest=d.get("digest"),
        state=d["state"],
        started_at=d.get("started_at"),
        exit_code=d.get("exit_code"),
        restart_count=int(d.get("restart_count") or 0),
        slot=d.get("slot"),
        port=d.get("port"),
        stopped_at=d.get("stopped_at"),
        secrets=d.get("secrets_label") or None,
    )


@functools.cache
def _tls() -> ssl.SSLContext:
    """One TLS context for every sandbox runtime's clients. An httpx client otherwise builds its
    own, loading the CA bundle (tens of ms each; a 200-host fleet has 400 clients), although the
    sandbox speaks plain HTTP to the loopback."""
    return httpx.create_ssl_context()


SWITCH_SECONDS = 10.0  # a switch (or a proxy start) the proxy has not applied by then failed
SWITCH_POLL_SECONDS = 0.02  # the proxy applies a new file within ~50 ms; a local GET is cheap


class SandboxRuntime(ServiceAdmin):
    def __init__(
        self,
        config: Config,
        droplet: Droplet,
        *,
        api_url: str | None = None,
        token: str | None = None,
        timeout: float = 10.0,
        probe_timeout: float = 3.0,
        **_ignored,
    ):
        self.config = config
        self.droplet = droplet
        self.name = droplet.name
        address = droplet.public_ipv4 or droplet.private_ipv4
        if not address:
            raise HostUnreachable(f"droplet {droplet.name} has no IPv4 address")
        self.address = address
        self._api_url = (api_url or config.digitalocean.api_url).rstrip("/")
        self._token = token or sandbox_token(config)
        self._agent = httpx.AsyncClient(
            base_url=f"{self._api_url}/sandbox/hosts/{droplet.name}",
            headers={"Authorization": f"Bearer {self._token}"},
            timeout=timeout,
            verify=_tls(),
        )
        # Direct calls to the host: no pooling, so a restarted service is never reached through
        # a connection to its predecessor.
        self._direct = httpx.AsyncClient(timeout=probe_timeout, limits=httpx.Limits(max_keepalive_connections=0),
                                         verify=_tls())
        self._probe_timeout = probe_timeout
        self._secrets = SecretEnv()

    def __repr__(self) -> str:
        return f"SandboxRuntime({self.name!r}, {self.address!r})"

    # ----- agent -----
    async def _call(
        self, method: str, path: str, *, ok=(200, 201, 204), none_on_404=False, image_op=False, **kw
    ) -> httpx.Response | None:
        try:
            r = await self._agent.request(method, path, **kw)
        except httpx.TimeoutException:
            raise HostUnreachable(f"{self.name}: sandbox agent timed out ({method} {path})") from None
        except httpx.HTTPError as exc:
            raise HostUnreachable(
                f"{self.name}: sandbox agent unreachable at {self._api_url}: {type(exc).__name__}"
            ) from None
        if r.status_code in ok:
            return r
        await self._call_failed(r, method, path, none_on_404=none_on_404, image_op=image_op)
        return None

    async def _call_failed(self, r: httpx.Response, method: str, path: str, *, none_on_404=False,
                           image_op=False) -> None:
        """Raise the error an agent's non-OK answer means (None: a 404 the caller takes as absent)."""
        try:
            message = str(r.json().get("message", r.text))
        except (ValueError, AttributeError):
            message = r.text
        if r.status_code == 404 and none_on_404 and not message.startswith("no local host"):
            return None
        if r.status_code == 401:
            raise HostUnreachable(f"{self.name}: the sandbox agent refused the token (401)")
        if r.status_code == 404 and message.startswith("no local host"):
            raise HostUnreachable(f"{self.name}: {message} (is it a sandbox droplet?)")
        if r.status_code == 404 and image_op:
            raise ImageNotFound(f"{self.name}: {message}")
        raise RuntimeFailure(f"{self.name}: {method} {path or '/'} -> {r.status_code}: {message}")

    async def _pull_auth(self) -> str | None:
        """Short-lived read-only registry credentials, asked for per pull as a droplet's pull does;
        the sandbox's registry refuses a pull without them or once they have expired."""
        try:
            r = await self._agent.get(
                f"{self._api_url}/v2/registries/{self.config.registry.name}/docker-credentials",
                params={"read_write": "false", "expiry_seconds": str(PULL_CREDENTIALS_SECONDS)},
            )
        except httpx.HTTPError as exc:
            raise HostUnreachable(f"{self.name}: sandbox API unreachable for registry credentials: "
                                  f"{type(exc).__name__}") from None
        if r.status_code == 404:
            return None  # no registry yet: the pull says what is missing
        if r.status_code != 200:
            raise RuntimeFailure(f"{self.name}: registry credentials -> {r.status_code}")
        auths = (r.json().get("auths") or {}).values()
        return next((a.get("auth") for a in auths if isinstance(a, dict)), None)

    async def pull(self, image_ref: str) -> ImageInfo:
        if image_ref.rpartition(":")[2].startswith("sha-"):
            # An immutable tag already on the host is that very image: no pull, no credentials.
            r = await self._call("POST", "/pull", json={"image_ref": image_ref, "present_only": True},
                                 none_on_404=True, image_op=True)
            if r is not None:
                d = r.json()
                return ImageInfo(ref=d["ref"], tag=d["tag"], digest=d["digest"], present=True)
        auth = await self._pull_auth()
        r = await self._call("POST", "/pull", json={"image_ref": image_ref, "auth": auth}, image_op=True)
        d = r.json()  # type: ignore[union-attr]
        return ImageInfo(ref=d["ref"], tag=d["tag"], digest=d["digest"])

    async def inspect(self) -> ContainerInfo | None:
        r = await self._call("GET", "/container", none_on_404=True)
        return None if r is None else _container(r.json())

    async def run(self, image_ref: str, env: dict[str, str] | None = None) -> ContainerInfo:
        r = await self._call("POST", "/container", json={"image_ref": image_ref, "env": dict(env or {}),
                                                         **self._secrets_body()}, image_op=True)
        return _container(r.json())  # type: ignore[union-attr]

    # ----- application secrets and the release command -----
    def set_secrets(self, secrets: SecretEnv | None) -> None:
        self._secrets = secrets or SecretEnv()

    def _secrets_body(self) -> dict[str, Any]:
        """The secrets for the agent (over its bearer-token API; it keeps them in memory only)."""
        if not self._secrets.values:
            return {}
        return {"secrets": dict(self._secrets.values), "secrets_label": self._secrets.label}

    async def release(self, image_ref: str, argv: list[str], env: dict[str, str] | None = None,
                      on_line: Callable[[str], Any] | None = None) -> tuple[int, list[str]]:
        bound = float(self.config.deploy.release_timeout_seconds)
        body = {"image_ref": image_ref, "argv": list(argv), "env": {**self.config.service.env, **(env or {})},
                "bound_seconds": bound, "secrets": dict(self._secrets.values)}
        lines: list[str] = []
        code: int | None = None
        try:
            async with self._agent.stream("POST", "/release", json=body, timeout=bound + 15.0) as r:
                if r.status_code != 200:
                    await r.aread()
                    await self._call_failed(r, "POST", "/release")
                async for raw in r.aiter_lines():
                    if not raw.strip():
                        continue
                    msg = json.loads(raw)
                    if "line" in msg:
                        lines.append(str(msg["line"]))
                        if on_line is not None:
                            on_line(str(msg["line"]))
                    elif "exit_code" in msg:
                        code = int(msg["exit_code"])
                    elif "error" in msg:
                        raise RuntimeFailure(f"{self.name}: release: {msg['error']}")
        except httpx.TimeoutException:
            raise HostUnreachable(f"{self.name}: sandbox agent timed out (POST /release)") from None
        except httpx.HTTPError as exc:
            raise HostUnreachable(f"{self.name}: sandbox agent unreachable: {type(exc).__name__}") from None
        if code is None:
            raise RuntimeFailure(f"{self.name}: the release command's result never came (connection ended)")
        return code, lines

    async def stop(self, grace_seconds: float) -> None:
        # The agent waits up to the grace period: give the HTTP call that long and more.
        await self._call(
            "POST", "/container/stop", json={"grace_seconds": grace_seconds}, timeout=float(grace_seconds) + 15.0
        )

    async def logs(self, tail: int = 100, *, since: float | None = None) -> list[str]:
        params = {"tail": str(tail)}
        if since is not None:
            params["since"] = repr(float(since))
        r = await self._call("GET", "/logs", params=params)
        return list(r.json()["lines"])  # type: ignore[union-attr]

    # ----- direct calls to the host -----
    def _admin_url(self, path: str) -> str:
        return f"http://{self.address}:{self.config.service.admin_port}{path}"

    async def _admin_get(self, path: str) -> dict | None:
        try:
            r = await self._direct.get(self._admin_url(path))
            return r.json() if r.status_code == 200 else None
        except (httpx.HTTPError, ValueError):
            return None

    async def _admin_post(self, path: str) -> None:
        try:
            r = await self._direct.post(self._admin_url(path))
        except httpx.HTTPError as exc:
            raise RuntimeFailure(f"{self.name}: POST {path} on the admin port failed: {type(exc).__name__}") from None
        if r.status_code != 200:
            raise RuntimeFailure(f"{self.name}: POST {path} on the admin port -> {r.status_code}")

    async def probe_health(self) -> HealthProbe:
        return await self._probe(self.config.health_port)

    async def _probe(self, port: int) -> HealthProbe:
        hc = self.config.load_balancer.health_check
        url = f"http://{self.address}:{port}{hc.path}"
        try:
            r = await self._direct.get(url, headers=PROBE_HEADER)
        except httpx.TimeoutException:
            return HealthProbe(False, None, f"timeout after {self._probe_timeout:g}s")
        except httpx.ConnectError:
            return HealthProbe(False, None, "connection refused")
        except httpx.HTTPError as exc:
            return HealthProbe(False, None, type(exc).__name__)
        detail = ""
        try:
            detail = str(r.json().get("status", ""))
        except ValueError:
            pass
        return HealthProbe(200 <= r.status_code < 400, r.status_code, detail)

    # ----- local-swap: the proxy and the slots -----
    def _slot_port(self, slot: str) -> int:
        if slot == "a":
            return self.config.proxy.slot_a_port
        if slot == "b":
            return self.config.proxy.slot_b_port
        raise RuntimeFailure(f"{self.name}: unknown slot {slot!r}")

    def _proxy_url(self, path: str) -> str:
        return f"http://{self.address}:{self.config.proxy.port}{path}"

    async def _proxy_view(self) -> tuple[bool, str | None, str]:
        """(ping answers OK, the slot the router sends to, what is wrong)."""
        try:
            ping = await self._direct.get(self._proxy_url(PING_PATH))
        except httpx.HTTPError as exc:
            return False, None, f"ping: {type(exc).__name__}"
        if ping.status_code != 200 or ping.text.strip() != "OK":
            return False, None, f"ping answered {ping.status_code}"
        try:
            router = await self._direct.get(self._proxy_url(ROUTER_PATH))
        except httpx.HTTPError as exc:
            return True, None, f"router: {type(exc).__name__}"
        return True, active_slot_from_router(router.content if router.status_code == 200 else None), ""

    async def proxy(self) -> ProxyStatus:
        try:
            r = await self._call("GET", "/proxy")
            d = r.json()  # type: ignore[union-attr]
        except (HostUnreachable, RuntimeFailure) as exc:
            return ProxyStatus(False, False, False, None, str(exc))
        if not d.get("installed"):
            return ProxyStatus(False, False, False, None, "no proxy installed")
        if not d.get("running"):
            return ProxyStatus(True, False, False, None, "the proxy is not running")
        healthy, slot, detail = await self._proxy_view()
        return ProxyStatus(True, True, healthy, slot, detail)

    def _proxy_settings(self) -> dict:
        p = self.config.proxy
        return {"service_port": self.config.service.port, "proxy_port": p.port,
                "slot_ports": {"a": p.slot_a_port, "b": p.slot_b_port},
                "port_env": self.config.service.port_env}

    async def _until_active(self, slot: str | None, what: str) -> ProxyStatus:
        deadline = time.monotonic() + SWITCH_SECONDS
        while True:
            status = await self.proxy()
            if status.healthy and status.active_slot == slot:
                return status
            if time.monotonic() >= deadline:
                seen = status.detail or f"it reports slot {status.active_slot or 'none'}"
                raise RuntimeFailure(f"{self.name}: {what}: the proxy did not report slot "
                                     f"{slot or 'none'} within {SWITCH_SECONDS:g}s ({seen})")
            await asyncio.sleep(0.05)

    async def install_proxy(self, slot: str | None) -> ProxyStatus:
        await self._call("POST", "/proxy", json={"slot": slot, **self._proxy_settings()})
        return await self._until_active(slot, "install the proxy")

    async def slot_containers(self) -> list[ContainerInfo]:
        r = await self._call("GET", "/slots")
        return [_container(c) for c in r.json()["containers"]]  # type: ignore[union-attr]

    async def run_slot(self, slot: str, image_ref: str, env: dict[str, str] | None = None) -> ContainerInfo:
        body = {"image_ref": image_ref, "env": dict(env or {}), "port": self._slot_port(slot),
                "port_env": self.config.service.port_env, **self._secrets_body()}
        r = await self._call("POST", f"/slots/{slot}", json=body, image_op=True)
        return _container(r.json())  # type: ignore[union-attr]

    async def probe_slot(self, slot: str) -> HealthProbe:
        return await self._probe(self._slot_port(slot))

    async def _router_slot(self) -> str | None:
        try:
            r = await self._direct.get(self._proxy_url(ROUTER_PATH))
        except httpx.HTTPError:
            return None
        return active_slot_from_router(r.content if r.status_code == 200 else None)

    async def switch(self, slot: str) -> None:
        self._slot_port(slot)
        await self._call("POST", "/proxy/switch", json={"slot": slot})
        # The agent wrote the file, so the proxy is installed: its router naming the slot is the
        # one answer that says the switch is applied (one request a poll, not proxy()'s three).
        deadline = time.monotonic() + SWITCH_SECONDS
        while await self._router_slot() != slot:
            if time.monotonic() >= deadline:
                status = await self.proxy()  # the whole look, to say what is wrong
                if status.healthy and status.active_slot == slot:
                    return
                seen = status.detail or f"it reports slot {status.active_slot or 'none'}"
                raise RuntimeFailure(f"{self.name}: switch: the proxy did not report slot {slot} within "
                                     f"{SWITCH_SECONDS:g}s ({seen})")
            await asyncio.sleep(SWITCH_POLL_SECONDS)

    async def in_flight(self, slot: str) -> int | None:
        try:
            r = await self._call("GET", f"/slots/{slot}/in_flight")
        except (HostUnreachable, RuntimeFailure):
            return None
        return int(r.json()["in_flight"])  # type: ignore[union-attr]

    async def stop_slot(self, slot: str, grace_seconds: float) -> None:
        await self._call("POST", f"/slots/{slot}/stop", json={"grace_seconds": grace_seconds},
                         timeout=float(grace_seconds) + 15.0)

    async def remove_container(self, name: str) -> None:
        await self._call("DELETE", f"/containers/{name}")

    async def traffic(self) -> ProxyCounters | None:
        # The proxy's metrics straight from the host (as a droplet's are read on its loopback)
        # and both slots' in-flight counts in one agent call, at once.
        text, flying = await asyncio.gather(self._metrics_text(), self._in_flight_all(), return_exceptions=True)
        if isinstance(text, BaseException):
            raise text
        if isinstance(flying, BaseException):
            raise flying
        if text is None:
            return None
        try:
            return ProxyCounters(slots=parse_metrics(text), in_flight=flying)
        except ValueError:
            return None

    async def _metrics_text(self) -> str | None:
        """The proxy's metrics text; None when it does not answer, or answers more than is read."""
        body = bytearray()
        try:
            async with self._direct.stream("GET", self._proxy_url(METRICS_PATH)) as r:
                if r.status_code != 200:
                    return None
                async for chunk in r.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_TEXT:
                        return None
        except httpx.HTTPError:
            return None
        return body.decode("utf-8", "replace")

    async def _in_flight_all(self) -> dict[str, int | None]:
        try:
            r = await self._call("GET", "/in_flight")
            counts = r.json()["in_flight"]  # type: ignore[union-attr]
            return {slot: int(counts[slot]) for slot in ("a", "b")}
        except (HostUnreachable, RuntimeFailure, ValueError, KeyError, TypeError):
            return {"a": None, "b": None}

    async def prune(self, keep: int) -> list[str]:
        r = await self._call("POST", "/prune", json={"keep": keep})
        return list(r.json()["removed"])  # type: ignore[union-attr]

    # ----- state files -----
    async def state_read(self, name: str) -> str | None:
        r = await self._call("GET", f"/state/{name}", none_on_404=True)
        return None if r is None else r.text

    async def state_create(self, name: str, content: str) -> bool:
        r = await self._call("POST", f"/state/{name}", params={"mode": "create"}, content=content, ok=(201, 409))
        return r.status_code == 201  # type: ignore[union-attr]

    async def state_write(self, name: str, content: str) -> None:
        await self._call("PUT", f"/state/{name}", content=content)

    async def state_append(self, name: str, line: str) -> None:
        await self._call("POST", f"/state/{name}", params={"mode": "append"}, content=line)

    async def state_remove(self, name: str) -> None:
        await self._call("DELETE", f"/state/{name}")

    async def close(self) -> None:
        await self._agent.aclose()
        await self._direct.aclose()
