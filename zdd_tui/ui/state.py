"""What the console knows about the fleet, and the rows the panes show (pure, no Textual).

Row builders return plain tuples keyed by a stable id, so a pane can compare them cell by cell
and repaint only what changed, and so the tests can check them without a screen.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from zdd_tui.events import Event, LogLine
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
from zdd_tui.project.status import SwapView
from zdd_tui.project.traffic import TrafficHistory
from zdd_tui.rollout.events import HealthChanged, Phase, PhaseChanged, Plan, Progress, SlotSwitched


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
    """What a host says about itself (no API request): its direct health and its container, and
    on a local-swap host its proxy and slot containers."""

    probe: HealthProbe | None = None
    container: ContainerInfo | None = None
    error: str | None = None
    draining: bool = False  # the service says so (admin stats)
    swap: SwapView | None = None

    @property
    def health(self) -> Health:
        if self.draining and self.probe is not None and not self.probe.healthy:
            return Health.DRAINING
        return Health.from_probe(self.probe)

    @property
    def proxied(self) -> bool:
        return self.swap is not None and self.swap.installed

    @property
    def tag(self) -> str | None:
        """What serves its traffic: the proxy's active slot where there is a proxy."""
        if self.swap is not None and self.swap.installed and self.swap.serving_tag:
            return self.swap.serving_tag
        return self.container.tag if self.container else None

    @property
    def proxy_health(self) -> Health | None:
        """None: no proxy on this host (lb-drain)."""
        if self.swap is None or not self.swap.installed:
            return None
        return Health.from_bool(self.swap.proxy.healthy)

    @property
    def active_slot(self) -> str | None:
        return self.swap.active_slot if self.proxied and self.swap else None

    @property
    def retained(self) -> int | None:
        return len(self.swap.retained_tags) if self.proxied and self.swap else None


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
    traffic: TrafficHistory | None = None  # each host's recent traffic (project.traffic); None: not read yet

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
        elif task == "traffic":
            self.traffic = result


def natural_key(name: str) -> tuple:
    """app-2 before app-10, as a person counts."""
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

# "Serving": the tag that gets the host's traffic (local-swap: the proxy's active slot's).
DROPLET_COLUMNS = ("Name", "Public IP", "Status", "Region", "Serving", "Direct health", "Proxy", "Slot", "Kept")
LB_COLUMNS = ("Droplet", "LB health")
TAG_COLUMNS = ("Tag", "Digest", "Size", "Age", "Ran here")

Row = tuple[str, tuple[Any, ...]]  # (key, cells); a cell is a str or a Health


def droplet_rows(state: FleetState) -> list[Row]:
    rows: list[Row] = []
    for d in state.droplets or []:
        host = state.hosts.get(d.name)
        tag = host.tag if host and host.tag else "—"
        health = host.health if host else Health.UNKNOWN
        # Without a proxy (lb-drain) the container itself serves: no slot, no proxy, nothing kept.
        proxy = host.proxy_health if host else None
        slot = (host.active_slot or "none") if host and host.proxied else "—"
        kept = host.retained if host else None
        rows.append((d.name, (d.name, d.public_ipv4 or "—", d.status, d.region, tag, health,
                              "—" if proxy is None else proxy, slot, "—" if kept is None else str(kept))))
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


# -- plans in words ----------------------------------------------------------------------------

ADOPTION_WORDS = {
    "fresh": "runs nothing yet: gets the proxy and the app at once",
    "lb-drain": "drained out of the LB once (its app has the admin contract), then the proxy",
    "detach": "taken out of the LB through DigitalOcean's API once, then the proxy",
}


def adoption_words(plan: Plan) -> str:
    """The hosts that get their first proxy in this rollout, and how, in one line."""
    how: dict[str, list[str]] = {}
    for host, way in plan.adopt:
        how.setdefault(way, []).append(host)
    return "; ".join(f"{_compact_hosts(hosts)} ({ADOPTION_WORDS.get(way, way)})" for way, hosts in how.items())


# -- the rollout view's model ------------------------------------------------------------------

_LB_MOVES = (Phase.DRAINING, Phase.WAITING_LB_OUT, Phase.RESTORING)  # the host leaves the LB (again)
_ENDED = (Phase.DONE, Phase.RESTORED, Phase.FAILED, Phase.SKIPPED)


class HostRow:
    """One host's state in the rollout view, folded from the engine's events (widgets.HostTable
    draws it). A local-swap row (`swap`) shows the proxy's health and the slot and tag the proxy
    sends traffic to where an lb-drain row shows the LB's view: that host never leaves the LB."""

    def __init__(self, name: str, from_tag: str | None, *, swap: bool = False, slot: str | None = None,
                 serving: str | None = None):
        self.host = name
        self.from_tag = from_tag
        self.phase = Phase.PENDING
        self.detail = ""
        self.fraction = 0.0
        self.started_at: float | None = None
        self.ended_at: float | None = None
        self.now = 0.0
        self.lb = Health.UNKNOWN
        self.direct = Health.UNKNOWN
        # The LB column: what the engine established (its counters, e.g. "3 checks passed") once
        # it has; until then DigitalOcean's advisory view, which lags, shown with its age.
        self.lb_known = ""
        self.lb_seen_at: float | None = None  # when the advisory view was fetched
        self.swap = swap
        self.proxy = Health.UNKNOWN
        self.slot = slot  # the slot the proxy sends traffic to (None: none, or not known yet)
        self.serving = serving if serving is not None else from_tag  # the tag that gets the traffic
        self.switches = 0  # SlotSwitched seen

    def apply(self, ev: Event) -> bool:
        """Fold one event about this host in; True when what is shown may have changed."""
        at = ev.at or 0.0
        if isinstance(ev, PhaseChanged):
            if ev.phase in _LB_MOVES:  # the host leaves the LB again: the old evidence is over
                self.set_lb_evidence(None, "")
            self.set_phase(ev.phase, ev.detail, at)
        elif isinstance(ev, Progress):
            self.set_progress(ev.fraction)
        elif isinstance(ev, HealthChanged):
            if ev.view == "lb" and ev.established:
                self.set_lb_evidence(Health.OK if ev.healthy else Health.DRAINING, ev.detail or "")
            else:
                self.set_health(ev.view, ev.healthy, ev.detail, at)
        elif isinstance(ev, SlotSwitched):
            self.switched(ev.slot, ev.tag)
        elif isinstance(ev, LogLine):
            evidence = lb_evidence(ev.line)
            if evidence is None:
                return False
            self.set_lb_evidence(*evidence)
        else:
            return False
        return True

    def set_phase(self, phase: Phase, detail: str, at: float) -> None:
        self.phase, self.detail = phase, detail
        if self.started_at is None and phase not in (Phase.PENDING, Phase.SKIPPED):
            self.started_at = at
        if phase in _ENDED:
            self.ended_at = at if self.started_at is not None else None
        if phase is Phase.DONE:
            self.fraction = 1.0
        self.now = max(self.now, at)

    def set_progress(self, fraction: float) -> None:
        self.fraction = max(0.0, min(fraction, 1.0))

    def set_health(self, view: str, healthy: bool | None, detail: str, at: float | None = None) -> None:
        h = Health.DRAINING if (healthy is False and "drain" in detail) else Health.from_bool(healthy)
        if view == "lb":
            if not self.lb_known:  # the engine's evidence outranks the advisory view
                self.lb = h
                self.lb_seen_at = at
        elif view == "proxy":
            self.proxy = h
            self.swap = True
        else:
            self.direct = h

    def switched(self, slot: str, tag: str) -> None:
        """The proxy now sends this host's traffic to `slot`, which runs `tag`."""
        self.slot, self.serving, self.swap = slot, tag, True
        self.switches += 1

    def set_lb_evidence(self, health: Health | None, words: str) -> None:
        """What the engine established about the LB and this host (None: nothing yet, again)."""
        if health is None:
            self.lb_known = ""
            return
        self.lb, self.lb_known = health, words

    def lb_text(self) -> str:
        if self.lb_known:
            return f"{self.lb.glyph} {self.lb_known}"
        if self.lb_seen_at is None or self.lb is Health.UNKNOWN:
            return self.lb.label
        return f"{self.lb.glyph} advisory {int(max(self.now - self.lb_seen_at, 0))}s old"

    def serving_text(self) -> str:
        """The slot and tag the proxy sends traffic to, e.g. "b sha-c0ffee1"."""
        tag = self.serving or "nothing"
        return f"{self.slot} {tag}" if self.slot else tag

    def tick(self, now: float) -> None:
        self.now = max(self.now, now)

    @property
    def elapsed(self) -> float:
        if self.started_at is None:
            return 0.0
        end = self.ended_at if self.ended_at is not None else self.now
        return max(end - self.started_at, 0.0)


# What an engine logs when it has established a host's place in the LB (rollout/engine.py):
# read only from engines that do not send it as HealthChanged(view="lb", established=True).
_LB_EVIDENCE = (("LB sends traffic: ", Health.OK), ("undrained; ", Health.OK),
                ("LB stopped sending traffic: ", Health.DRAINING))


def lb_evidence(line: str) -> tuple[Health, str] | None:
    """(health, short words) from an engine log line about the LB and one host, or None."""
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
