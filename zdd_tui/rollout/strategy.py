"""What the batch loop (`engine.py`) and the two strategies (`lbdrain.py`, `localswap.py`) share:
where each host stands, the failures a step raises, the engine's options, and the hooks a
strategy gives the loop.
"""

from __future__ import annotations

import abc
import asyncio
import enum
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from zdd_tui.rollout.events import Phase, PlannedHost
from zdd_tui.rollout.interfaces import ContainerInfo, HostRuntime, ProxyStatus

if TYPE_CHECKING:
    from zdd_tui.rollout.engine import Engine

# Where a host's progress bar stands when it enters each phase.
FRACTION = {
    Phase.PENDING: 0.0, Phase.PULLING: 0.02, Phase.DRAINING: 0.1, Phase.WAITING_LB_OUT: 0.12,
    Phase.STOPPING: 0.45, Phase.STARTING: 0.5, Phase.WAITING_HEALTHY: 0.55, Phase.WAITING_LB_IN: 0.65,
    Phase.DONE: 1.0, Phase.FAILED: 1.0, Phase.RESTORING: 1.0, Phase.RESTORED: 1.0, Phase.SKIPPED: 0.0,
    Phase.LEAVING_LB: 0.1, Phase.INSTALLING_PROXY: 0.3, Phase.CHECKING_HEALTH: 0.4, Phase.SWITCHING: 0.7,
    Phase.DRAINING_OLD: 0.75, Phase.STOPPING_OLD: 0.9, Phase.SOAKING: 0.8,
}


class HostState(enum.Enum):
    """Where one host stands in the rollout. One value rather than a set of flags, so no
    contradictory mix can be represented; the phase it shows and its outcome follow from it."""

    PENDING = ("pending", Phase.PENDING)
    PULLING = ("pulling", Phase.PULLING)
    DRAINED_EARLY = ("drained-early", Phase.DRAINING)  # while the previous batch came back (overlap)
    EARLY_UNDONE = ("early-undone", Phase.PENDING)  # drained early, undrained before the LB took it out
    DRAINING = ("draining", Phase.DRAINING)
    WAITING_LB_OUT = ("waiting-lb-out", Phase.WAITING_LB_OUT)
    STOPPING = ("stopping", Phase.STOPPING)
    STARTING = ("starting", Phase.STARTING)
    WAITING_HEALTHY = ("waiting-healthy", Phase.WAITING_HEALTHY)
    WAITING_LB_IN = ("waiting-lb-in", Phase.WAITING_LB_IN)
    DONE = ("done", Phase.DONE)
    FAILED = ("failed", Phase.FAILED)  # a step failed (a restore follows), or the pull did
    RESTORING = ("restoring", Phase.RESTORING)
    RESTORED = ("restored", Phase.RESTORED)
    INTERRUPTED = ("interrupted", Phase.RESTORED)  # stopped on request; the previous version is back
    RESTORE_FAILED = ("restore-failed", Phase.FAILED)
    SKIPPED = ("skipped", Phase.SKIPPED)
    SKIPPED_UNDONE = ("skipped-undone", Phase.SKIPPED)  # drained early and undrained, then not changed
    # local-swap
    LEAVING_LB = ("leaving-lb", Phase.LEAVING_LB)
    INSTALLING_PROXY = ("installing-proxy", Phase.INSTALLING_PROXY)
    CHECKING_HEALTH = ("checking-health", Phase.CHECKING_HEALTH)
    SWITCHING = ("switching", Phase.SWITCHING)
    DRAINING_OLD = ("draining-old", Phase.DRAINING_OLD)
    STOPPING_OLD = ("stopping-old", Phase.STOPPING_OLD)
    SOAKING = ("soaking", Phase.SOAKING)  # canary: switched, the old container still running

    # The key keeps states that show the same phase distinct members.
    def __init__(self, key: str, phase: Phase):
        self.key = key
        self.phase = phase

    @property
    def old_stopped(self) -> bool:
        """Reached in the cycle: restoring means running the previous image again."""
        return self in _OLD_STOPPED

    @property
    def new_started(self) -> bool:
        """Reached in the cycle: the new container may have served traffic."""
        return self in _NEW_STARTED

    @property
    def outcome(self) -> str:
        """As the journal records it: done | restored | interrupted | failed | skipped | pending."""
        return _OUTCOMES.get(self, "pending")


_NEW_STARTED = frozenset({HostState.STARTING, HostState.WAITING_HEALTHY, HostState.WAITING_LB_IN, HostState.DONE})
_OLD_STOPPED = _NEW_STARTED | {HostState.STOPPING}
_OUTCOMES = {
    HostState.DONE: "done", HostState.RESTORED: "restored", HostState.INTERRUPTED: "interrupted",
    HostState.RESTORE_FAILED: "failed", HostState.SKIPPED: "skipped", HostState.SKIPPED_UNDONE: "skipped",
}


class StepFailed(Exception):
    def __init__(self, phase: Phase, seen: str):
        super().__init__(f"{phase.value}: {seen}")
        self.phase = phase
        self.seen = seen


LogFn = Callable[[str | None, str, str], Awaitable[None]]


class ChangesRefused(Exception):
    """Raised by EngineOptions.before_changes: the rollout stops before any host changes."""

    def __init__(self, message: str, seen: str = ""):
        super().__init__(message)
        self.message = message
        self.seen = seen


class Cancelled(Exception):
    """The operator asked to stop; raised only while the host can still be left as it was."""


@dataclass
class EngineOptions:
    poll_seconds: float = 0.1  # admin counters and direct probes: cheap, on the host itself; each
    # 0.1 s of lag after the LB decides can push the new container past its next health check
    lb_poll_seconds: float | None = None  # the LB view is an API call: default once per interval
    env: dict[str, str] | None = None  # extra environment for new containers (runtime adds its own)
    fallback_prev: dict[str, str] = field(default_factory=dict)  # host -> image ref, when none runs
    step_timeout_extra: float = 30.0  # slack on top of pull/stop timeouts for the runtime call itself
    # Drain the next batch while the current one collects its last passing checks, timed from the
    # checkers' phases so the next batch leaves the LB one check after the current one is back
    # (never before: a guard undrains it first). Saves (unhealthy-1) x interval per batch.
    overlap: bool = True
    # Awaited once every host has pulled, before any host changes (the release command), with
    # the engine's log(host, line, level) for its output; it raises ChangesRefused to stop the
    # rollout there (Outcome REFUSED).
    before_changes: Callable[[LogFn], Awaitable[None]] | None = None
    # local-swap: how often every host's proxy counters are read (the traffic graph, the canary).
    traffic_seconds: float = 1.0


@dataclass
class HostRun:
    planned: PlannedHost
    rt: HostRuntime
    state: HostState = HostState.PENDING
    prev: ContainerInfo | None = None
    prev_ref: str | None = None
    digest: str | None = None
    started_at: float = 0.0  # wall clock, journal
    lb_view: bool | None = None
    direct: bool | None = None
    # local-swap
    proxy: ProxyStatus | None = None  # as seen before anything changed
    adopt: str | None = None  # fresh | lb-drain | detach: how a host with no proxy gets one
    proxy_view: bool | None = None  # last proxy health reported (HealthChanged view "proxy")

    @property
    def name(self) -> str:
        return self.planned.name

    @property
    def phase(self) -> Phase:
        return self.state.phase

    @property
    def pre_drained(self) -> bool:
        return self.state is HostState.DRAINED_EARLY

    @property
    def early_undone(self) -> bool:
        return self.state in (HostState.EARLY_UNDONE, HostState.SKIPPED_UNDONE)


HostResult = tuple[StepFailed | None, bool, str | None]  # (failure, cancelled, restore error)


class Strategy(abc.ABC):
    """One way to replace a host's version. The engine's batch loop calls these hooks; a strategy
    reaches the hosts, the clock and the event stream through the engine (`self.e`)."""

    name = ""

    def __init__(self, engine: Engine):
        self.e = engine

    async def preflight(self) -> None:
        """Before anything changes on any host (even a pull); raises Refused to stop there."""
        return None  # a hook: nothing to do unless the strategy has something

    @abc.abstractmethod
    async def inspect(self, h: HostRun) -> None:
        """What the host runs now (`h.prev`, `h.prev_ref`), before its pull."""

    async def before_batch(self, batch: list[HostRun]) -> None:
        """Wait until the batch may start (StepFailed: halt, Cancelled: interrupt)."""
        return None  # a hook: nothing to do unless the strategy has something

    def alongside(self, batch: list[HostRun], nxt: list[HostRun], over: asyncio.Event) -> asyncio.Task | None:
        """Work that runs while `batch` runs (lb-drain: drain the next batch early), or None."""
        return None

    @abc.abstractmethod
    async def host(self, h: HostRun) -> HostResult:
        """Run one host to DONE, or back to what it ran."""

    async def wind_down(self) -> None:
        """The rollout stops here: undo anything begun ahead of its turn."""
        return None  # a hook: nothing to do unless the strategy has something

    async def finish_canary(self, h: HostRun) -> HostResult:
        """The canary passed: finish the host's cycle (a strategy with a canary overrides this)."""
        raise RuntimeError(f"{self.name} has no canary: its plans never name one")

    async def revert_canary(self, h: HostRun, why: str, cancelled: bool) -> HostResult:
        """The canary is not kept: the host back on the version it ran (a strategy with a canary
        overrides this)."""
        raise RuntimeError(f"{self.name} has no canary: its plans never name one")

    @abc.abstractmethod
    def halt_message(self, h: HostRun, f: StepFailed) -> str:
        """The outcome's words when `h` failed with `f` and the rollout halts."""

    async def fleet_tag(self, rt: HostRuntime) -> str | None:
        """The tag the host serves now (None: nothing)."""
        info = await rt.inspect()
        return info.tag if info is not None and info.state == "running" else None


class Refused(Exception):
    """Nothing was changed, and the rollout does not start: what was found and what to do."""

    def __init__(self, message: str, host: str | None = None, seen: str = ""):
        super().__init__(message)
        self.message = message
        self.host = host
        self.seen = seen


def not_running(info: ContainerInfo | None) -> str | None:
    """In words, why a container is not serving (crashed, exited, restarting); None if it runs."""
    if info is None:
        return "no container"
    if info.state != "running" or info.restart_count > 0:
        bits = [f"container {info.state}"]
        if info.exit_code is not None:
            bits.append(f"exit code {info.exit_code}")
        if info.restart_count:
            bits.append(f"{info.restart_count} restart(s)")
        return ", ".join(bits)
    return None
