"""What the console knows about the fleet, and the rows the panes show (pure, no Textual).

Row builders return plain tuples keyed by a stable id, so a pane can compare them cell by cell
and repaint only what changed, and so the tests can check them without a screen.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from zdd_tui.project import (
    ContainerInfo,
    Droplet,
    HealthProbe,
    LoadBalancer,
    RateLimit,
    RegistryTag,
    RolloutSeen,
    Versions,
    ago,
)


class Health(enum.Enum):
    OK = "healthy"
    FAIL = "unhealthy"
    DRAINING = "draining"
    STARTING = "starting"
    UNKNOWN = "unknown"

    @property
    def glyph(self) -> str:
        return _GLYPHS[self]

    @property
    def word(self) -> str:
        return self.value

    @property
    def theme_var(self) -> str:
        """The theme variable that colours it (colour is never the only signal)."""
        return _VARS[self]

    @property
    def label(self) -> str:
        return f"{self.glyph} {self.word}"

    @classmethod
    def from_bool(cls, healthy: bool | None) -> Health:
        return cls.UNKNOWN if healthy is None else (cls.OK if healthy else cls.FAIL)

    @classmethod
    def from_probe(cls, probe: HealthProbe | None) -> Health:
        if probe is None:
            return cls.UNKNOWN
        if probe.healthy:
            return cls.OK
        detail = (probe.detail or "").lower()
        if "draining" in detail:
            return cls.DRAINING
        if "starting" in detail:
            return cls.STARTING
        return cls.FAIL


_GLYPHS = {
    Health.OK: "✔",
    Health.FAIL: "✖",
    Health.DRAINING: "◐",
    Health.STARTING: "◔",
    Health.UNKNOWN: "?",
}
_VARS = {
    Health.OK: "success",
    Health.FAIL: "error",
    Health.DRAINING: "warning",
    Health.STARTING: "warning",
    Health.UNKNOWN: "foreground-muted",
}


@dataclass(frozen=True)
class HostState:
    """What a host says about itself (no API request): its direct health and its container."""

    probe: HealthProbe | None = None
    container: ContainerInfo | None = None
    error: str | None = None
    draining: bool = False  # the service says so (admin stats)

    @property
    def health(self) -> Health:
        if self.draining and self.probe is not None and not self.probe.healthy:
            return Health.DRAINING
        return Health.from_probe(self.probe)

    @property
    def tag(self) -> str | None:
        return self.container.tag if self.container else None


RolloutInfo = RolloutSeen  # a rollout seen on the hosts (their lock and journal), whoever started it


@dataclass
class FleetState:
    droplets: list[Droplet] | None = None  # None: not loaded yet
    lb: LoadBalancer | None = None
    lb_loaded: bool = False
    lb_health: dict[str, bool | None] = field(default_factory=dict)
    tags: list[RegistryTag] | None = None
    hosts: dict[str, HostState] = field(default_factory=dict)
    rollout: RolloutInfo | None = None
    versions: Versions | None = None  # which versions ran (the journals); None: not read yet
    tag_labels: dict[str, str] = field(default_factory=dict)  # tag -> label (the sandbox's failure modes)
    rate_limit: RateLimit | None = None
    requests_made: int = 0
    errors: dict[str, str] = field(default_factory=dict)  # task -> last error, cleared on success

    def apply(self, task: str, result: Any, error: BaseException | None) -> None:
        """Fold one poll result in."""
        if error is not None:
            self.errors[task] = _error_text(error)
            return
        self.errors.pop(task, None)
        if task == "droplets":
            self.droplets = sorted(result, key=lambda d: natural_key(d.name))
        elif task == "lb":
            self.lb, self.lb_loaded = result, True
        elif task == "lb_health":
            self.lb_health = dict(result)
        elif task == "tags":
            self.tags = list(result)
        elif task == "hosts":
            self.hosts = dict(result)
        elif task == "rollout":
            self.rollout = result
        elif task == "history":
            self.versions = result
        elif task == "labels":
            self.tag_labels = dict(result)


def natural_key(name: str) -> tuple:
    """app-2 before app-10, as a person counts."""
    import re

    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name))


def _error_text(exc: BaseException) -> str:
    from zdd_tui.text import visible

    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return visible(text)[:120]  # a host's or the API's words, shown rather than obeyed


# -- formatting ------------------------------------------------------------------------------


def human_size(n: int | None) -> str:
    """Binary units (KiB, MiB, GiB), as the sizes are counted."""
    if n is None:
        return "—"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def human_age(then: datetime | None, now: datetime) -> str:
    if then is None:
        return "—"
    if then.tzinfo is None:
        then = then.replace(tzinfo=UTC)
    return ago((now - then).total_seconds())


def short_digest(digest: str | None) -> str:
    if not digest:
        return "—"
    _, _, hexpart = digest.partition(":")
    return f"{hexpart[:10]}" if hexpart else digest[:10]  # enough to tell images apart at a glance


def human_elapsed(seconds: float) -> str:
    s = max(int(seconds), 0)
    return f"{s // 60}:{s % 60:02d}"


# -- rows ------------------------------------------------------------------------------------

DROPLET_COLUMNS = ("Name", "Public IP", "Status", "Region", "Running", "Direct health")
LB_COLUMNS = ("Droplet", "LB health")
TAG_COLUMNS = ("Tag", "Digest", "Size", "Age", "Ran here")

Row = tuple[str, tuple[Any, ...]]  # (key, cells); a cell is a str or a Health


def droplet_rows(state: FleetState) -> list[Row]:
    rows: list[Row] = []
    for d in state.droplets or []:
        host = state.hosts.get(d.name)
        tag = host.tag if host and host.tag else "—"
        health = host.health if host else Health.UNKNOWN
        rows.append((d.name, (d.name, d.public_ipv4 or "—", d.status, d.region, tag, health)))
    return rows


def lb_rows(state: FleetState) -> list[Row]:
    rows: list[Row] = []
    for d in state.droplets or []:
        rows.append((d.name, (d.name, Health.from_bool(state.lb_health.get(d.name)))))
    return rows


def lb_summary(state: FleetState) -> list[tuple[str, str]]:
    """(label, value) lines describing the load balancer."""
    lb = state.lb
    if lb is None:
        return [("Load balancer", "loading…" if not state.lb_loaded else "none found")]
    rules = ", ".join(
        f"{r.entry_protocol.upper()} {r.entry_port} → {r.target_protocol.upper()} {r.target_port}"
        for r in lb.forwarding_rules
    ) or "—"
    hc = lb.health_check
    path = hc.path if hc.protocol.lower().startswith("http") else ""
    return [
        ("Name", lb.name),
        ("IP", lb.ip or "—"),
        ("Status", lb.status),
        ("Forwarding", rules),
        ("Health check", f"{hc.protocol.upper()} :{hc.port}{path}"),
        ("Every", f"{hc.check_interval_seconds}s, timeout {hc.response_timeout_seconds}s"),
        ("Thresholds", f"unhealthy {hc.unhealthy_threshold}, healthy {hc.healthy_threshold}"),
    ]


def tag_rows(state: FleetState, now: datetime) -> list[Row]:
    where: dict[str, list[str]] = {}
    for name, host in sorted(state.hosts.items()):
        if host.tag:
            where.setdefault(host.tag, []).append(name)
    oldest = datetime.min.replace(tzinfo=UTC)

    def when(t: RegistryTag) -> datetime:
        u = t.updated_at
        if u is None:
            return oldest
        return u if u.tzinfo else u.replace(tzinfo=UTC)

    # An alias (`latest`) ran wherever the sha tag with its digest ran.
    alias = {t.manifest_digest: t.tag for t in state.tags or [] if t.tag.startswith("sha-")}
    rows: list[Row] = []
    for t in sorted(state.tags or [], key=lambda t: (when(t), t.tag), reverse=True):
        runs = where.get(t.tag, [])
        label = state.tag_labels.get(t.tag)
        ran = t.tag if t.tag.startswith("sha-") else alias.get(t.manifest_digest, t.tag)
        cells = (f"{t.tag} · {label}" if label else t.tag, short_digest(t.manifest_digest),
                 human_size(t.compressed_size_bytes), human_age(t.updated_at, now),
                 ran_text(state.versions, ran, runs, now))
        rows.append((t.tag, cells))
    return rows


def ran_text(versions: Versions | None, tag: str, runs: list[str], now: datetime) -> str:
    """Whether a tag ran on this fleet, when and where: the hosts running it now (they say so),
    else the hosts' journals."""
    if runs:
        return f"● now on {_few(runs)}"
    if versions is None:
        return "—"
    v = versions.get(tag)
    if v is None:
        return "never"
    if v.current:
        return f"● now on {_few(list(v.hosts))}"
    then = datetime.fromtimestamp(v.until or 0.0, UTC)
    return f"{human_age(then, now)} ago on {_few(list(v.hosts))}"


def _few(names: list[str]) -> str:
    """Hosts in a narrow cell: two names, or the first and how many more."""
    return ", ".join(names) if len(names) <= 2 else f"{names[0]} +{len(names) - 1}"


def _compact_hosts(names: list[str]) -> str:
    if not names:
        return "—"
    if len(names) <= 3:
        return ", ".join(names)
    return f"{', '.join(names[:2])} +{len(names) - 2} more"


def hosts_on(state: FleetState, tag: str) -> list[str]:
    return sorted(n for n, h in state.hosts.items() if h.tag == tag)


def fleet_health_counts(state: FleetState) -> dict[Health, int]:
    counts: dict[Health, int] = {}
    for d in state.droplets or []:
        h = state.hosts.get(d.name)
        k = h.health if h else Health.UNKNOWN
        counts[k] = counts.get(k, 0) + 1
    return counts


def rate_limit_text(rl: RateLimit | None) -> str:
    if rl is None:
        return "API rate limit: —"
    return f"API {rl.remaining}/{rl.limit} left"


# What the engine logs when it has established a host's place in the LB (rollout/engine.py),
# turned into the rollout view's LB column: the engine's evidence, not the lagging advisory view.
_LB_EVIDENCE = (("LB sends traffic: ", Health.OK), ("undrained; ", Health.OK),
                ("LB stopped sending traffic: ", Health.DRAINING))


def lb_evidence(line: str) -> tuple[Health, str] | None:
    """(health, short words) from an engine log line about the LB and one host, or None."""
    import re

    for prefix, health in _LB_EVIDENCE:
        if line.startswith(prefix):
            why = re.sub(r" after [\d.]+s$", "", line[len(prefix):])
            m = re.match(r"LB health checks (passed|failed) (\d+)x", why)
            if m:
                return health, f"{m.group(2)} checks {m.group(1)}"
            m = re.match(r"receiving traffic \((\d+) request", why)
            if m:
                return health, f"{m.group(1)} requests in"
            if "reports it healthy" in why:
                return health, "LB reports healthy"
            return health, "no public traffic" if "no public traffic" in why else why[:17]
    return None
