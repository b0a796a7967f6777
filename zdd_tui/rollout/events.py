"""Typed events the engine emits; the console and the headless renderer are two listeners.

Every event is a frozen dataclass with a `kind` string (for JSON lines) and `at` (the engine
clock's time when it was emitted). `to_dict(event)` gives the JSON form.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field
from typing import Any, Callable


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
}


class OutcomeStatus(str, enum.Enum):
    SUCCESS = "success"
    HALTED = "halted"  # a host failed and was restored to its previous version
    ERROR = "error"  # a failure that could not be restored
    REFUSED = "refused"  # nothing changed (lock held, unknown tag, bad input)
    INTERRUPTED = "interrupted"  # the operator stopped it; the current step was finished or restored


@dataclass(frozen=True)
class PlannedHost:
    name: str
    address: str
    from_tag: str | None  # what it runs now (None: nothing)
    batch: int  # 0-based batch index


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
    # Hosts already on to_tag and serving,
    # left alone; and warnings for the operator (e.g. batch size lowered).
    unchanged: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    resumes: str | None = None  # the interrupted rollout id this plan continues or rolls back

    @property
    def batches(self) -> list[list[PlannedHost]]:
        out: dict[int, list[PlannedHost]] = {}
        for h in self.hosts:
            out.setdefault(h.batch, []).append(h)
        return [out[k] for k in sorted(out)]


@dataclass(frozen=True)
class Event:
    at: float = field(default=0.0, kw_only=True)

    @property
    def kind(self) -> str:
        return _KINDS[type(self)]


@dataclass(frozen=True)
class RolloutPlanned(Event):
    plan: Plan


@dataclass(frozen=True)
class PhaseChanged(Event):
    host: str
    phase: Phase
    detail: str = ""


@dataclass(frozen=True)
class Progress(Event):
    host: str
    fraction: float  # this host, 0..1
    overall: float  # the whole rollout, 0..1


@dataclass(frozen=True)
class HealthChanged(Event):
    host: str
    view: str  # "lb" (as the load balancer sees it) | "direct" (probed from the host)
    healthy: bool | None  # None: unknown
    detail: str = ""


@dataclass(frozen=True)
class LogLine(Event):
    host: str | None
    line: str
    level: str = "info"  # info | warning | error


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


@dataclass(frozen=True)
class RolloutFinished(Event):
    outcome: Outcome


_KINDS: dict[type, str] = {
    RolloutPlanned: "planned",
    PhaseChanged: "phase",
    Progress: "progress",
    HealthChanged: "health",
    LogLine: "log",
    RolloutFinished: "finished",
}

Listener = Callable[[Event], Any]


def to_dict(event: Event) -> dict[str, Any]:
    """The JSON form of an event: {"kind": ..., "at": ..., fields...}."""

    def conv(v: Any) -> Any:
        if isinstance(v, enum.Enum):
            return v.value
        if dataclasses.is_dataclass(v):
            return {f.name: conv(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, (list, tuple)):
            return [conv(x) for x in v]
        if isinstance(v, dict):
            return {k: conv(x) for k, x in v.items()}
        return v

    d = conv(event)
    return {"kind": event.kind, **d}
