"""The small interfaces the rollout engine talks to. No Textual, SSH or pydo here.

Two host runtimes implement `HostRuntime`: the sandbox's local hosts (`zdd_tui.sandbox.runtime`)
and Docker over SSH (`zdd_tui.hosts.runtime`). The engine deploys through either unchanged.
`Cloud` is what the engine needs from the load balancer and the registry; `Clock` lets tests drive time.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from zdd_tui.text import show_fields
from zdd_tui.traffic import ProxyCounters


class ImageNotFound(Exception):
    """The registry has no such tag (raised by `HostRuntime.pull`)."""


class HostUnreachable(Exception):
    """The host (SSH, sandbox agent) cannot be reached."""


class RuntimeFailure(Exception):
    """A host operation failed; the message says what was run and what was seen."""


@dataclass(frozen=True)
class ImageInfo:
    ref: str  # the reference as pulled, e.g. registry.digitalocean.com/reg/app:sha-abc1234
    tag: str  # sha-abc1234
    digest: str  # sha256:...
    present: bool = False  # an immutable tag already on the host: nothing was fetched


@dataclass(frozen=True)
class ContainerInfo:
    name: str
    image_ref: str
    tag: str
    digest: str | None
    state: str  # running | exited | restarting | created
    started_at: float | None = None  # epoch seconds
    exit_code: int | None = None
    restart_count: int = 0
    # local-swap only: the slot ("a" or "b") and port the container was started on; None for the
    # single container of lb-drain.
    slot: str | None = None
    port: int | None = None
    stopped_at: float | None = None  # epoch seconds; orders the retained (stopped) containers
    # The secrets it was started with: its label `zdd.secrets` (names and keyed fingerprints,
    # zdd_tui.app_secrets), None when it has none.
    secrets: str | None = None

    def __post_init__(self) -> None:
        show_fields(self, newlines=False)  # as the host's docker reported it


@dataclass(frozen=True)
class HealthChecker:
    """One source of LB health checks as the service counted them (per source address)."""

    source: str
    consecutive_ok: int
    consecutive_fail: int
    last_age_seconds: float  # seconds since this source's last check


@dataclass(frozen=True)
class ServiceStats:
    """The service's admin counters (GET /admin/stats on the admin port, host's 127.0.0.1)."""

    id: str
    version: str
    draining: bool
    served: int  # public requests answered, health checks excluded
    in_flight: int  # public requests being served now
    last_request_age_seconds: float | None  # None: no public request yet
    health_checkers: tuple[HealthChecker, ...] = ()
    uptime_seconds: float = 0.0

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> ServiceStats:
        """Parse the admin endpoint's JSON; a missing or null number counts as 0."""
        age = d.get("last_request_age_seconds")
        return cls(
            id=str(d.get("id") or ""),
            version=str(d.get("version") or ""),
            draining=bool(d.get("draining")),
            served=int(d.get("served") or 0),
            in_flight=int(d.get("in_flight") or 0),
            last_request_age_seconds=None if age is None else float(age),
            health_checkers=tuple(
                HealthChecker(
                    source=str(c.get("source") or ""),
                    consecutive_ok=int(c.get("consecutive_ok") or 0),
                    consecutive_fail=int(c.get("consecutive_fail") or 0),
                    last_age_seconds=float(c.get("last_age_seconds") or 0.0),
                )
                for c in d.get("health_checkers") or ()
            ),
            uptime_seconds=float(d.get("uptime_seconds") or 0.0),
        )


@dataclass(frozen=True)
class HealthProbe:
    """A direct probe of the service's /health from the host's own side."""

    healthy: bool
    status: int | None  # HTTP status, None when no answer
    detail: str = ""  # e.g. "connection refused", "timeout after 3s"

    def __post_init__(self) -> None:
        show_fields(self, newlines=False)  # may quote the service's own answer


SLOTS = ("a", "b")


def other_slot(slot: str | None) -> str:
    """The idle slot beside `slot` (a host with no active slot starts on "a")."""
    return "b" if slot == "a" else "a"


@dataclass(frozen=True)
class ProxyStatus:
    """The proxy on one host (local-swap), as the host reports it."""

    installed: bool  # its container (process in the sandbox) exists
    running: bool
    healthy: bool  # its own ping answers
    active_slot: str | None  # the slot it sends traffic to, as the proxy itself reports; None: none
    detail: str = ""  # what is wrong, in words, when not healthy

    def __post_init__(self) -> None:
        show_fields(self, newlines=False)


@runtime_checkable
class HostRuntime(Protocol):
    """One host: its app container, the service's admin port, and its zdd state files.

    The app container always has the same name (the config's container_name), runs with host
    networking and `restart always`, and listens on the service port; its admin port is bound to
    the host's loopback. State files (lock, journal) live in the host's zdd state directory.
    """

    name: str  # droplet name
    address: str  # the address the LB targets (public or private IPv4)

    async def pull(self, image_ref: str) -> ImageInfo:
        """Fetch the image (registry credentials are the runtime's business). ImageNotFound if absent."""

    async def inspect(self) -> ContainerInfo | None:
        """The app container, or None when there is none."""

    async def run(self, image_ref: str, env: dict[str, str] | None = None) -> ContainerInfo:
        """Start the app container from image_ref (removes a stopped one of the same name first)."""

    async def stop(self, grace_seconds: float) -> None:
        """SIGTERM, wait up to grace_seconds, then SIGKILL; remove the container. No-op if none."""

    async def logs(self, tail: int = 100, *, since: float | None = None) -> list[str]:
        """The app container's last `tail` lines of output (stdout and stderr, merged); with
        `since` (epoch seconds, the host's clock), only the lines it wrote at or after then."""

    async def stats(self) -> ServiceStats | None:
        """The service's admin counters; None when the admin port does not answer."""

    async def drain(self) -> None:
        """Tell the service to fail its health checks (admin POST /admin/drain)."""

    async def undrain(self) -> None:
        """Cancel a drain (admin POST /admin/undrain), used when a rollout restores a host."""

    async def probe_health(self) -> HealthProbe:
        """GET /health on the service port from the host itself, marked as a probe (not the LB)."""

    async def state_read(self, name: str) -> str | None:
        """Content of state file `name`, None if absent."""

    async def state_create(self, name: str, content: str) -> bool:
        """Create `name` atomically and exclusively; False if it already exists."""

    async def state_write(self, name: str, content: str) -> None:
        """Atomically replace `name`."""

    async def state_append(self, name: str, line: str) -> None:
        """Append one line (a newline is added)."""

    async def state_remove(self, name: str) -> None:
        """Remove `name`; no error if absent."""

    async def close(self) -> None:
        """Release connections."""


@runtime_checkable
class SwapHost(Protocol):
    """The local-swap part of a host runtime: the proxy on `service.port` and the app in two slots.

    The proxy (host networking, restart always) forwards to the active slot's port on the host's
    own loopback; its control surface is a root-owned file on the host, never a port. App
    containers are named per tag, started with `restart unless-stopped` (a crash restarts them, a
    stop keeps them stopped across a reboot) and are told their slot's port in `service.port_env`.
    Stopped ones are kept (newest `deploy.retain`) so a rollback to them needs no pull.
    """

    async def proxy(self) -> ProxyStatus:
        """The proxy's state; never raises for a missing or dead proxy (installed/running say so)."""

    async def install_proxy(self, slot: str | None) -> ProxyStatus:
        """Write the proxy's configuration (upstream: `slot`, or none) and start the proxy.
        Idempotent. RuntimeFailure if service.port is held by something else (say what)."""

    async def slot_containers(self) -> list[ContainerInfo]:
        """This app's slot containers, running and stopped, each with slot and port set."""

    async def run_slot(self, slot: str, image_ref: str, env: dict[str, str] | None = None) -> ContainerInfo:
        """Start image_ref on `slot` (its port in service.port_env). A running container on that
        slot is an error (RuntimeFailure); a stopped one of the same name is replaced."""

    async def probe_slot(self, slot: str) -> HealthProbe:
        """GET the health path on the slot's port from the host itself (not through the proxy)."""

    async def switch(self, slot: str) -> None:
        """Point the proxy at `slot` (its configuration replaced by rename: in-flight requests to
        the old slot finish) and return once the proxy reports `slot` active (RuntimeFailure if
        it does not within a few seconds)."""

    async def in_flight(self, slot: str) -> int | None:
        """Requests the proxy has in flight to `slot` now (None: cannot tell)."""

    async def stop_slot(self, slot: str, grace_seconds: float) -> None:
        """SIGTERM the slot's running container, SIGKILL after the grace; keep it (stopped)."""

    async def remove_container(self, name: str) -> None:
        """Remove one (stopped) app container, e.g. a new one that never got healthy."""

    async def prune(self, keep: int) -> list[str]:
        """Remove stopped slot containers beyond the newest `keep` (and their images when no
        container uses them); the names removed."""

    async def traffic(self) -> ProxyCounters | None:
        """The proxy's cumulative counters per slot (its metrics on the host's loopback, read over
        the existing connection: no cloud API request) and what is in flight to each slot now;
        None when the proxy is not installed or does not answer. Cheap: sampled every second."""


@runtime_checkable
class ReleaseHost(Protocol):
    """Application secrets and the release command, on a host runtime."""

    def set_secrets(self, secrets: Any) -> None:
        """The secrets (zdd_tui.app_secrets.SecretEnv, or None) every container started from now
        on gets in its environment, with their label; values stay in memory on this side."""

    async def release(self, image_ref: str, argv: list[str], env: dict[str, str] | None = None,
                      on_line: Any = None) -> tuple[int, list[str]]:
        """Run `argv` once in a one-off container of image_ref (the app's environment and secrets,
        no ports, removed after); (exit code, its output lines). `on_line(line)` sees each line
        as it comes."""


class ServiceAdmin(abc.ABC):
    """`stats`, `drain` and `undrain` of HostRuntime over the service's admin endpoints; a
    runtime supplies only the transport (an SSH port forward, or a direct call in the sandbox)."""

    @abc.abstractmethod
    async def _admin_get(self, path: str) -> Mapping[str, Any] | None:
        """The endpoint's JSON; None when it does not answer 200 with JSON."""

    @abc.abstractmethod
    async def _admin_post(self, path: str) -> None:
        """POST to the endpoint; RuntimeFailure unless it answers 200."""

    async def stats(self) -> ServiceStats | None:
        d = await self._admin_get("/admin/stats")
        return None if d is None else ServiceStats.from_json(d)

    async def drain(self) -> None:
        await self._admin_post("/admin/drain")

    async def undrain(self) -> None:
        await self._admin_post("/admin/undrain")


@dataclass(frozen=True)
class LBSettings:
    """The load balancer's health-check settings the engine derives its bounds from."""

    interval: float
    timeout: float
    unhealthy_threshold: int
    healthy_threshold: int


class Cloud(Protocol):
    """What the engine needs from the cloud: the LB's settings and health view, and registry tags."""

    async def lb_settings(self) -> LBSettings: ...

    async def lb_health(self) -> dict[str, bool | None]:
        """droplet name -> healthy as the LB sees it (None: unknown). Advisory; may lag."""

    async def tag_exists(self, tag: str) -> bool: ...

    async def lb_detach(self, host: str) -> None:
        """Take the droplet out of the LB through the cloud's API (adoption without the app's help)."""

    async def lb_attach(self, host: str) -> None:
        """Put it back (the LB then health-checks it before sending traffic)."""


class Clock(Protocol):
    def now(self) -> float:
        """Monotonic seconds."""

    async def sleep(self, seconds: float) -> None: ...


@dataclass
class SystemClock:
    def now(self) -> float:
        import time

        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        import asyncio

        await asyncio.sleep(seconds)
