"""The fleet's status, gathered once: droplets, the LB and its per-droplet health, registry tags,
per host the tag it runs and its own health (and, where the host runtime has a local-swap proxy,
the proxy's health, its active slot, the tag it serves and the versions kept), and the rollout
state (lock, journal, interrupted).

`to_dict()` is the `status --json` shape, `render_text` the human form. A part that fails leaves
its part empty and adds a line to `errors`; nothing here prints.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from zdd_tui.cloud.models import Droplet, LoadBalancer, RegistryTag
from zdd_tui.config import Config
from zdd_tui.project.app_secrets import secrets_lines, secrets_view
from zdd_tui.rollout.interfaces import ContainerInfo, HealthProbe, ProxyStatus
from zdd_tui.text import visible

if TYPE_CHECKING:
    from zdd_tui.project.open import Project

T = TypeVar("T")


@dataclass(frozen=True)
class SwapView:
    """A host's local-swap side as the host reports it: its proxy and its slot containers."""

    proxy: ProxyStatus
    slots: tuple[ContainerInfo, ...] = ()

    @property
    def installed(self) -> bool:
        return self.proxy.installed

    @property
    def active_slot(self) -> str | None:
        return self.proxy.active_slot

    @property
    def serving(self) -> ContainerInfo | None:
        """The container on the slot the proxy sends traffic to (a running one first)."""
        on_slot = [c for c in self.slots if c.slot is not None and c.slot == self.proxy.active_slot]
        if not on_slot:
            return None
        return max(on_slot, key=lambda c: (c.state == "running", c.started_at or 0.0))

    @property
    def serving_tag(self) -> str | None:
        c = self.serving
        return c.tag if c else None

    @property
    def retained_tags(self) -> list[str]:
        """The versions kept stopped for a rollback without a pull, the last stopped first."""
        serving = self.serving
        kept = sorted((c for c in self.slots if c.state != "running" and c is not serving),
                      key=lambda c: c.stopped_at or 0.0, reverse=True)
        return list(dict.fromkeys(c.tag for c in kept if c.tag))

    def proxy_words(self) -> str:
        p = self.proxy
        if not p.installed:
            return "no proxy"
        if p.healthy:
            return "proxy healthy"
        state = "running" if p.running else "not running"
        return f"proxy UNHEALTHY ({state}{': ' + p.detail if p.detail else ''})"

    def text(self) -> str:
        """In words, for `zdd-tui status`: proxy health, what it serves, what is kept."""
        if not self.installed:
            return "no proxy"
        slot = self.active_slot
        serves = f"slot {slot} serves {self.serving_tag or 'nothing running'}" if slot else "no active slot"
        kept = self.retained_tags
        return f"{self.proxy_words()}; {serves}; kept {', '.join(kept) if kept else 'none'}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "proxy": asdict(self.proxy),
            "proxy_healthy": self.proxy.installed and self.proxy.healthy,
            "active_slot": self.active_slot,
            "serving_tag": self.serving_tag,
            "retained_tags": self.retained_tags,
            "slots": [asdict(c) for c in self.slots],
        }


@dataclass
class HostStatus:
    name: str
    container: ContainerInfo | None = None
    health: HealthProbe | None = None
    version: str | None = None  # what the service reports (admin stats), None when silent
    draining: bool | None = None
    error: str | None = None  # the host could not be asked
    swap: SwapView | None = None  # None: the host's runtime has no local-swap side

    @property
    def tag(self) -> str | None:
        """What serves the host's traffic: the proxy's active slot where there is a proxy."""
        if self.swap is not None and self.swap.installed and self.swap.serving_tag:
            return self.swap.serving_tag
        return self.container.tag if self.container else None

    @property
    def strategy(self) -> str | None:
        """How the host is deployed to now, as it looks: a proxy in front means local-swap."""
        if self.swap is not None and self.swap.installed:
            return "local-swap"
        return "lb-drain" if self.container is not None else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "tag": self.tag,
            "strategy": self.strategy,
            "container": asdict(self.container) if self.container else None,
            "health": asdict(self.health) if self.health else None,
            "version": self.version,
            "draining": self.draining,
            "error": self.error,
            "swap": self.swap.to_dict() if self.swap else None,
        }


@dataclass
class FleetStatus:
    sandbox: bool
    api_url: str
    droplets: list[Droplet] = field(default_factory=list)
    load_balancer: LoadBalancer | None = None
    lb_health: dict[int, bool | None] = field(default_factory=dict)
    lb_url: str | None = None  # the sandbox LB's local URL (a DO LB has `ip`)
    tags: list[RegistryTag] = field(default_factory=list)
    hosts: dict[str, HostStatus] = field(default_factory=dict)
    rollout: dict[str, Any] | None = None
    errors: list[str] = field(default_factory=list)
    secrets: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # project.app_secrets.secrets_view

    def to_dict(self) -> dict[str, Any]:
        lb = self.load_balancer
        return {
            "sandbox": self.sandbox,
            "api_url": self.api_url,
            "droplets": [
                {
                    "id": d.id,
                    "name": d.name,
                    "status": d.status,
                    "public_ipv4": d.public_ipv4,
                    "private_ipv4": d.private_ipv4,
                    "tags": list(d.tags),
                    "lb_healthy": self.lb_health.get(d.id),
                    "host": self.hosts[d.name].to_dict() if d.name in self.hosts else None,
                }
                for d in self.droplets
            ],
            "load_balancer": None
            if lb is None
            else {
                "id": lb.id,
                "name": lb.name,
                "ip": lb.ip,
                "url": self.lb_url,
                "status": lb.status,
                "tag": lb.tag,
                "droplet_ids": list(lb.droplet_ids),
                "forwarding_rules": [asdict(r) for r in lb.forwarding_rules],
                "health_check": asdict(lb.health_check),
                "droplet_health": {str(k): v for k, v in self.lb_health.items()},
            },
            "registry": {
                "tags": [
                    {
                        "tag": t.tag,
                        "repository": t.repository,
                        "manifest_digest": t.manifest_digest,
                        "compressed_size_bytes": t.compressed_size_bytes,
                        "updated_at": t.updated_at.isoformat() if isinstance(t.updated_at, datetime) else None,
                    }
                    for t in self.tags
                ]
            },
            "rollout": self.rollout,
            "secrets": self.secrets,
            "errors": list(self.errors),
        }


def why(exc: BaseException) -> str:
    """The first line of an error, for a one-line report."""
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


async def host_status(project: Project, droplet: Droplet) -> HostStatus:
    """The container and the service's own health, from the host itself; where the runtime has
    a local-swap side, its proxy and slot containers too (one call each: no API request)."""
    status = HostStatus(droplet.name)
    try:
        rt = project.runtime(droplet)
        status.container, status.health, stats, status.swap = await asyncio.gather(
            rt.inspect(), rt.probe_health(), rt.stats(), swap_view(rt))
    except Exception as exc:  # noqa: BLE001 - one silent host must not hide the others
        status.error = why(exc)
        return status
    if stats is not None:
        status.version, status.draining = stats.version, stats.draining
    return status


async def swap_view(rt: Any) -> SwapView | None:
    """The proxy and the slot containers, when the runtime can tell (None: it has no such side)."""
    if not (hasattr(rt, "proxy") and hasattr(rt, "slot_containers")):
        return None
    proxy, slots = await asyncio.gather(rt.proxy(), rt.slot_containers())
    return SwapView(proxy, tuple(slots))


async def rollout_part(project: Project, droplets: list[Droplet]) -> dict[str, Any] | None:
    """The hosts' rollout state, JSON-able; `lines` is the same in words for the text form."""
    if not droplets:
        return None
    state = await project.rollout_state(droplets)
    return {**state.to_dict(), "lines": state.lines()}


def sandbox_lb_url(config: Config) -> str | None:
    if not config.is_sandbox or not config.sandbox or not config.sandbox.state_dir:
        return None
    from zdd_tui.sandbox.supervisor import read_running_info

    return read_running_info(config.sandbox.state_dir).get("lb_url")


async def gather(project: Project, *, hosts: bool = True) -> FleetStatus:
    config = project.config
    st = FleetStatus(sandbox=config.is_sandbox, api_url=config.digitalocean.api_url, lb_url=sandbox_lb_url(config))

    async def part(label: str, coro: Awaitable[T], default: T) -> T:
        try:
            return await coro
        except Exception as exc:  # noqa: BLE001 - reported in `errors`
            st.errors.append(f"{label}: {why(exc)}")
            return default

    st.droplets, st.load_balancer, st.tags = await asyncio.gather(
        part("droplets", project.droplets(), []),
        part("load balancer", project.load_balancer(), None),
        part("registry tags", project.registry_tags(), []),
    )
    empty: dict[int, bool | None] = {}
    lb_health, statuses = await asyncio.gather(
        part("LB health", project.lb_health(st.load_balancer), empty),
        asyncio.gather(*(host_status(project, d) for d in (st.droplets if hosts else []))),
    )
    st.lb_health = lb_health
    st.hosts = {h.name: h for h in statuses}
    st.rollout = await part("rollout", rollout_part(project, st.droplets), None)
    st.secrets = await part("secrets", secrets_view(project, st.hosts), {})
    return st


def render_text(st: FleetStatus) -> str:
    """The human form of `zdd-tui status` (health in words, never colour alone)."""
    out = []
    where = "sandbox (local stand-in for DigitalOcean)" if st.sandbox else "DigitalOcean"
    out.append(f"{where}  API {st.api_url}")
    lb = st.load_balancer
    if lb is None:
        out.append("load balancer: none")
    else:
        hc = lb.health_check
        out.append(
            f"load balancer {lb.name} ({lb.status}) {st.lb_url or lb.ip or ''}  tag {lb.tag or '-'}  "
            f"check {hc.protocol.upper()} {hc.path}:{hc.port} every {hc.check_interval_seconds}s, "
            f"timeout {hc.response_timeout_seconds}s, out after {hc.unhealthy_threshold}, "
            f"in after {hc.healthy_threshold}"
        )
    out.append(f"droplets ({len(st.droplets)}):")
    if lb is not None and st.droplets and all(st.lb_health.get(d.id) is None for d in st.droplets):
        # DigitalOcean's metric has no sample yet (a new load balancer) or none it could match.
        out.append("  (LB health: no data from DigitalOcean's monitoring yet: shown as unknown, not unhealthy)")
    for d in st.droplets:
        lbh = st.lb_health.get(d.id)
        lbw = {True: "LB:healthy", False: "LB:UNHEALTHY", None: "LB:unknown"}[lbh]
        h = st.hosts.get(d.name)
        if h is None:
            hostw = ""
        elif h.error:
            hostw = f"host: unreachable ({h.error})"
        else:
            c = h.container
            if c is None:
                cw = "no container"
            else:
                cw = f"{c.tag} {c.state}" + (f" (restarts {c.restart_count})" if c.restart_count else "")
            if h.health is None:
                hw = "-"
            else:
                hw = "ok" if h.health.healthy else f"FAILING {h.health.status or ''} {h.health.detail}".rstrip()
            if h.swap is not None and h.swap.installed:
                hostw = f"local-swap: {h.swap.text()}; health {hw}"
            else:
                hostw = f"runs {cw}; health {hw}" + ("; draining" if h.draining else "")
        out.append(f"  {d.name:<12} {d.public_ipv4 or '-':<15} {d.status:<7} {lbw:<13} {hostw}")
    out.append(f"registry tags ({len(st.tags)}): " + ", ".join(t.tag for t in st.tags))
    if st.rollout:
        out.extend(st.rollout.get("lines") or [f"rollout: {st.rollout}"])
    out.extend(secrets_lines(st.secrets))
    for e in st.errors:
        out.append(f"error: {e}")
    # Hosts and the API fill most of these lines: shown, never obeyed, by the terminal.
    return visible("\n".join(out), newlines=True)
