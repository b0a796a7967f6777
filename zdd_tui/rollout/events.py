"""The rollout's vocabulary: the plan, the per-host phases, the outcome, and the events the
engine emits (zdd_tui.events.Event; the engine stamps `at` with its clock). The engine also
emits the neutral LogLine. The console and the headless renderer are two listeners.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from zdd_tui.events import Event
from zdd_tui.text import show_fields
from zdd_tui.traffic import Rates


class Phase(str, enum.Enum):
    PENDING = "pending"
    PULLING = "pulling"
    DRAINING = "draining"
    WAITING_LB_OUT = "waiting-lb-out"  # until the LB has stopped sending it traffic
    STOPPING = "stopping"
    STARTING = "starting"
    WAITING_HEALTHY = "waiting-healthy"  # the new container's own health
    WAITING_LB_IN = "waiting-lb-in"  # until the LB sends it traffic again
    DONE = "done"
    FAILED = "failed"
    RESTORING = "restoring"  # putting the previous version back
    RESTORED = "restored"
    SKIPPED = "skipped"  # not touched because the rollout halted earlier
    # local-swap: the host stays in the LB; its proxy moves traffic from one slot to the other.
    INSTALLING_PROXY = "installing-proxy"  # adoption: the first local-swap deploy onto a host
    LEAVING_LB = "leaving-lb"  # adoption of a serving host without the admin contract (cloud API)
    CHECKING_HEALTH = "checking-health"  # the new slot's own health, before any traffic
    SWITCHING = "switching"  # the proxy's upstream moves to the new slot
    DRAINING_OLD = "draining-old"  # until the proxy has no request in flight to the old slot
    STOPPING_OLD = "stopping-old"  # the old container stops and is kept for rollback
    SOAKING = "soaking"  # canary: serves the new version under real traffic, the old one still running

    @property
    def words(self) -> str:
        return _PHASE_WORDS[self]


_PHASE_WORDS = {
    Phase.PENDING: "waiting its turn",
    Phase.PULLING: "pulling image",
    Phase.DRAINING: "draining",
    Phase.WAITING_LB_OUT: "waiting for LB to stop traffic",
    Phase.STOPPING: "stopping old container",
    Phase.STARTING: "starting new container",
    Phase.WAITING_HEALTHY: "waiting for health",
    Phase.WAITING_LB_IN: "waiting for LB to send traffic",
    Phase.DONE: "done",
    Phase.FAILED: "failed",
    Phase.RESTORING: "restoring previous version",
    Phase.RESTORED: "restored",
    Phase.SKIPPED: "not touched",
    Phase.INSTALLING_PROXY: "installing proxy",
    Phase.LEAVING_LB: "leaving the LB (adoption)",
    Phase.CHECKING_HEALTH: "checking health",
    Phase.SWITCHING: "switching",
    Phase.DRAINING_OLD: "draining old",
    Phase.STOPPING_OLD: "stopping old",
    Phase.SOAKING: "canary: soaking",
}


class OutcomeStatus(str, enum.Enum):
    SUCCESS = "success"
    HALTED = "halted"  # a host failed and was restored to its previous version
    ERROR = "error"  # a failure that could not be restored
    REFUSED = "refused"  # nothing changed (lock held, unknown tag, bad input)
    INTERRUPTED = "interrupted"  # the operator stopped it; the current step was finished or restored


# How a host with no proxy yet gets one (Plan.adopt), in words.
_ADOPT_WORDS = {
    "fresh": "runs nothing: proxy and app at once",
    "lb-drain": "no proxy yet: leaves the LB once (drain cycle) to get it",
    "detach": "no proxy yet: leaves the LB once (taken out through the cloud's API) to get it",
}


@dataclass(frozen=True)
class PlannedHost:
    name: str
    address: str
    from_tag: str | None  # what it runs now (None: nothing)
    batch: int  # 0-based batch index

    def __post_init__(self) -> None:
        show_fields(self, newlines=False)  # names and tags the hosts and the API reported


@dataclass(frozen=True)
class Plan:
    rollout_id: str
    action: str  # deploy | rollback | resume
    to_tag: str
    image_ref: str
    hosts: tuple[PlannedHost, ...]
    batch_size: int
    estimated_seconds: float
    estimate_basis: str  # how the estimate was derived, in words
    # Hosts already on to_tag and serving, left alone; and warnings for the operator (e.g.
    # batch size lowered).
    unchanged: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    resumes: str | None = None  # the interrupted rollout id this plan continues or rolls back
    strategy: str = "lb-drain"  # lb-drain | local-swap
    # local-swap: hosts with no proxy yet, and how each is adopted ("fresh": runs nothing, gets
    # proxy and app at once; "lb-drain": one drain cycle; "detach": out of the LB via the API).
    adopt: tuple[tuple[str, str], ...] = ()
    # local-swap: the canary gate. The first batch (these hosts) soaks this long under real
    # traffic and is judged against the hosts still on the old version; 0: no canary.
    canary_hosts: tuple[str, ...] = ()
    canary_seconds: float = 0.0

    def __post_init__(self) -> None:
        show_fields(self, newlines=False)

    @property
    def batches(self) -> list[list[PlannedHost]]:
        out: dict[int, list[PlannedHost]] = {}
        for h in self.hosts:
            out.setdefault(h.batch, []).append(h)
        return [out[k] for k in sorted(out)]

    def text(self) -> str:
        """The plan preview, in words."""
        lines = [f"Plan {self.rollout_id}: {self.action} {self.to_tag}"]
        lines.append(f"  image: {self.image_ref}")
        lines.append(f"  strategy: {self.strategy}")
        if self.resumes:
            lines.append(f"  continues interrupted rollout {self.resumes}")
        if not self.hosts:
            lines.append(f"  nothing to do: every host already runs {self.to_tag}")
        for i, batch in enumerate(self.batches):
            hosts = ", ".join(f"{h.name} ({h.from_tag or 'nothing'} -> {self.to_tag})" for h in batch)
            lines.append(f"  batch {i + 1}: {hosts}")
        if self.canary_hosts:
            lines.append(f"  canary: {', '.join(self.canary_hosts)} soak {_dur(self.canary_seconds)} under real "
                         "traffic and are judged against the hosts still on the old version")
        for name, how in self.adopt:
            lines.append(f"  adopt {name}: {_ADOPT_WORDS.get(how, how)}")
        if self.unchanged:
            lines.append(f"  unchanged (already on {self.to_tag}): {', '.join(self.unchanged)}")
        lines.append(f"  batch size {self.batch_size}; estimated {_dur(self.estimated_seconds)} "
                     f"({self.estimate_basis})")
        for note in self.notes:
            lines.append(f"  note: {note}")
        return "\n".join(lines)


@dataclass(frozen=True)
class RolloutPlanned(Event, kind="planned"):
    plan: Plan

    def text(self) -> str:
        return self.plan.text()


@dataclass(frozen=True)
class PhaseChanged(Event, kind="phase"):
    host: str
    phase: Phase
    detail: str = ""

    def text(self) -> str:
        detail = f": {self.detail}" if self.detail else ""
        return f"{self.host:<12} {self.phase.words}{detail}"


@dataclass(frozen=True)
class Progress(Event, kind="progress"):
    host: str
    fraction: float  # this host, 0..1
    overall: float  # the whole rollout, 0..1

    def text(self) -> str:
        return f"{self.host:<12} {int(self.fraction * 100)}% (overall {int(self.overall * 100)}%)"


@dataclass(frozen=True)
class HealthChanged(Event, kind="health"):
    host: str
    view: str  # "lb" (as the load balancer sees it) | "direct" (probed from the host) | "proxy"
    healthy: bool | None  # None: unknown
    detail: str = ""
    # view "lb": True when the engine established it itself (the LB's checks counted by the
    # service, traffic seen arriving; `detail` says which, briefly, e.g. "3 checks passed"),
    # False for DigitalOcean's advisory view, which lags.
    established: bool = False

    def text(self) -> str:
        who = {"lb": "LB sees", "proxy": "proxy"}.get(self.view, "direct probe")
        word = {True: "healthy", False: "unhealthy", None: "unknown"}[self.healthy]
        detail = f" ({self.detail})" if self.detail else ""
        return f"{self.host:<12} {who}: {word}{detail}"


@dataclass(frozen=True)
class SlotSwitched(Event, kind="switched"):
    """local-swap: the host's proxy now sends traffic to `slot`, which runs `tag`."""

    host: str
    slot: str
    tag: str
    from_tag: str | None = None  # what the proxy sent traffic to before (None: nothing)

    def text(self) -> str:
        return f"{self.host:<12} traffic now goes to {self.tag} (slot {self.slot}; was {self.from_tag or 'nothing'})"


@dataclass(frozen=True)
class HostTraffic:
    """One host's traffic over one sample's window, as its proxy counted it."""

    host: str
    rates: Rates | None  # all its slots; None: no reading (no proxy, or it did not answer)
    by_tag: tuple[tuple[str, Rates], ...] = ()  # per version served in the window

    def __post_init__(self) -> None:
        show_fields(self, newlines=False)


@dataclass(frozen=True)
class TrafficSampled(Event, kind="traffic"):
    """local-swap: one reading of every host's proxy, about once a second during a rollout."""

    hosts: tuple[HostTraffic, ...]

    def text(self) -> str:
        known = [h.rates for h in self.hosts if h.rates is not None]
        rps = sum(r.rps for r in known)
        errors = sum(r.errors for r in known)
        return f"traffic: {rps:.0f} req/s, {errors} 5xx over {len(known)}/{len(self.hosts)} host(s)"


class CanaryState(str, enum.Enum):
    SOAKING = "soaking"  # the canary serves; the numbers so far
    PASSED = "passed"
    FAILED = "failed"  # worse than the old version: the canary goes back to it
    INSUFFICIENT = "insufficient"  # too few requests to judge (canary.on_insufficient_traffic decides)


@dataclass(frozen=True)
class CanaryReport:
    """The canary gate's comparison: the first batch on the new version against the hosts still on
    the old one, over the same window."""

    state: CanaryState
    canary_hosts: tuple[str, ...]
    baseline_hosts: tuple[str, ...]
    canary: Rates
    baseline: Rates
    elapsed_seconds: float
    soak_seconds: float
    reason: str = ""  # the judgement in words, with the numbers and thresholds it used
    action: str = ""  # what follows: continuing, or the canary back on the old version and halted
    # The warm-up before the judged window (0: none). While `warming_up`, the numbers are those
    # since the switch, not judged, and elapsed_seconds counts against warmup_seconds.
    warmup_seconds: float = 0.0
    warming_up: bool = False

    def __post_init__(self) -> None:
        show_fields(self, newlines=False)

    def text(self) -> str:
        def side(r: Rates) -> str:
            share = "n/a" if r.error_share is None else f"{r.error_share * 100:.2f}%"
            p95 = "n/a" if r.p95 is None else f"{r.p95 * 1000:.0f}ms"
            return f"{r.requests} req, {r.errors} 5xx ({share}), p95 {p95}"

        head = f"canary {self.state.value}"
        if self.warming_up:
            head = (f"canary warming up ({max(0.0, self.warmup_seconds - self.elapsed_seconds):.0f}s left, "
                    f"not judged; then {self.soak_seconds:.0f}s soak)")
        elif self.state is CanaryState.SOAKING:
            head += f" ({max(0.0, self.soak_seconds - self.elapsed_seconds):.0f}s left)"
        lines = [head + (f": {self.reason}" if self.reason else ""),
                 f"  new ({', '.join(self.canary_hosts)}): {side(self.canary)}",
                 f"  old ({', '.join(self.baseline_hosts) or 'none'}): {side(self.baseline)}"]
        if self.action:
            lines.append(f"  {self.action}")
        return "\n".join(lines)


@dataclass(frozen=True)
class CanaryUpdate(Event, kind="canary"):
    """The soak's live comparison (about once a second), then once more with the verdict."""

    report: CanaryReport

    def text(self) -> str:
        return self.report.text()


@dataclass(frozen=True)
class Outcome:
    status: OutcomeStatus
    message: str
    to_tag: str
    failed_host: str | None = None
    failed_step: Phase | None = None
    seen: str = ""  # what was observed at the failure
    restored: bool = False
    fleet: dict[str, str | None] = field(default_factory=dict)  # host -> tag it runs now
    duration_seconds: float = 0.0
    rollout_id: str = ""  # empty for an outcome no engine produced (e.g. the console's own error)
    canary: CanaryReport | None = None  # the canary gate's verdict, when it ran

    def __post_init__(self) -> None:
        show_fields(self)  # what was seen at a failure is a host's own output

    def text(self) -> str:
        label = {
            OutcomeStatus.SUCCESS: "OK",
            OutcomeStatus.HALTED: "HALTED (restored)",
            OutcomeStatus.ERROR: "ERROR",
            OutcomeStatus.REFUSED: "REFUSED",
            OutcomeStatus.INTERRUPTED: "INTERRUPTED",
        }[self.status]
        lines = [f"{label}: {self.message}"]
        if self.failed_host:
            step = self.failed_step.value if self.failed_step else "?"
            lines.append(f"  failed: {self.failed_host} at {step}")
            if self.seen:
                lines.append(f"  seen: {self.seen}")
        elif self.seen:  # refused before any host changed (the release command): what it said
            lines.append(f"  seen: {self.seen}")
        if self.canary is not None:
            lines += ["  " + line for line in self.canary.text().splitlines()]
        lines.append(f"  took {_dur(self.duration_seconds)}")
        return "\n".join(lines)


@dataclass(frozen=True)
class RolloutFinished(Event, kind="finished"):
    outcome: Outcome

    def text(self) -> str:
        return self.outcome.text()


def _dur(seconds: float) -> str:
    seconds = max(0.0, seconds)
    return f"{seconds:.0f}s" if seconds < 120 else f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
