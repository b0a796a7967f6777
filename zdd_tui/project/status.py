"""The fleet's status, gathered once: droplets, the LB and its per-droplet health, registry tags,
per host the tag it runs and its own health, and the rollout state (lock, journal, interrupted).

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
from zdd_tui.rollout.interfaces import ContainerInfo, HealthProbe
from zdd_tui.text import visible

if TYPE_CHECKING:
    from zdd_tui.project.open import Project

T = TypeVar("T")


@dataclass
class HostStatus:
    name: str
    container: ContainerInfo | None = None
    health: HealthProbe | None = None
    version: str | None = None  # what the service reports (admin stats), None when silent
    draining: bool | None = None
    error: str | None = None  # the host could not be asked

    @property
    def tag(self) -> str | None:
        return self.container.tag if self.container else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "tag": self.tag,
            "container": asdict(self.container) if self.container else None,
            "health": asdict(self.health) if self.health else None,
            "version": self.version,
            "draining": self.draining,
            "error": self.error,
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
    """The container and the service's own health, from the host itself."""
    status = HostStatus(droplet.name)
    try:
        rt = project.runtime(droplet)
        status.container, status.health, stats = await asyncio.gather(rt.inspect(), rt.probe_health(), rt.stats())
    except Exception as exc:  # noqa: BLE001 - one silent host must not hide the others
        status.error = why(exc)
        return status
    if stats is not None:
        status.version, status.draining = stats.version, stats.draining
    return status


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
