"""The rolling deploy ("lb-drain"), one batch of hosts at a time.

Per host: pull (all hosts up front, so a missing tag fails before anything stops) -> drain ->
wait until the LB really stopped sending traffic -> stop (SIGTERM, grace) -> run new -> wait for
its own health -> wait until the LB sends it traffic again. Every wait is bounded by the LB's own
settings plus margin, and ends as soon as the evidence is there; none is a fixed sleep.

Evidence comes from the service's admin counters (per-source health-checker counts, in_flight,
served) and, advisory, the cloud's LB health view (an API call: polled at most once per interval).

On a failure the rollout halts; the failed host goes back to its previous image (or is undrained
if it was not stopped yet) and must be back in the LB; hosts not yet reached are not touched.
A cooperative cancel restores a host that was not stopped yet, finishes one that was, and stops.

No Textual, SSH or pydo in here: only the interfaces in `interfaces.py`.
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from zdd_tui.config import DeployConfig
from zdd_tui.events import Listener, LogLine
from zdd_tui.rollout.events import (
    HealthChanged,
    Outcome,
    OutcomeStatus,
    Phase,
    PhaseChanged,
    Plan,
    PlannedHost,
    Progress,
    RolloutFinished,
    RolloutPlanned,
)
from zdd_tui.rollout.interfaces import (
    Clock,
    Cloud,
    ContainerInfo,
    HealthChecker,
    HostRuntime,
    ImageNotFound,
    LBSettings,
    ServiceStats,
    SystemClock,
)
from zdd_tui.rollout.journal import Journal
from zdd_tui.rollout.listeners import Fanout
from zdd_tui.rollout.plan import bound_lb_in, bound_lb_out

# Where a host's progress bar stands when it enters each phase.
_FRACTION = {
    Phase.PENDING: 0.0, Phase.PULLING: 0.02, Phase.DRAINING: 0.1, Phase.WAITING_LB_OUT: 0.12,
    Phase.STOPPING: 0.45, Phase.STARTING: 0.5, Phase.WAITING_HEALTHY: 0.55, Phase.WAITING_LB_IN: 0.65,
    Phase.DONE: 1.0, Phase.FAILED: 1.0, Phase.RESTORING: 1.0, Phase.RESTORED: 1.0, Phase.SKIPPED: 0.0,
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
    """The operator asked to stop; raised only before the old container is stopped."""


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


@dataclass
class _Host:
    planned: PlannedHost
    rt: HostRuntime
    state: HostState = HostState.PENDING
    prev: ContainerInfo | None = None
    prev_ref: str | None = None
    digest: str | None = None
    started_at: float = 0.0  # wall clock, journal
    lb_view: bool | None = None
    direct: bool | None = None

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


class Engine:
    def __init__(
        self,
        plan: Plan,
        runtimes: Mapping[str, HostRuntime],
        cloud: Cloud,
        settings: LBSettings,
        deploy: DeployConfig,
        *,
        listeners: Iterable[Listener] = (),
        clock: Clock | None = None,
        journal: Journal | None = None,
        cancel: Any = None,  # anything with is_set(): asyncio.Event, threading.Event
        options: EngineOptions | None = None,
        wallclock: Callable[[], float] = time.time,
        operator: str = "",
    ):
        self.operator = operator
        self.plan = plan
        self.runtimes = runtimes  # every host of the fleet (the plan's and the unchanged ones)
        self.cloud = cloud
        self.settings = settings
        self.deploy = deploy
        self.fanout = Fanout(listeners)
        self.clock = clock or SystemClock()
        self.journal = journal
        self.cancel = cancel
        self.opt = options or EngineOptions()
        self.wallclock = wallclock
        self.hosts = [_Host(planned=p, rt=runtimes[p.name]) for p in plan.hosts]
        self._lb_cache: dict[str, bool | None] = {}
        self._lb_fetched_at: float | None = None
        self._lb_lock = asyncio.Lock()
        self._lb_error_reported = False
        self._t0 = 0.0

    # ---- events -------------------------------------------------------------------------
    async def _emit(self, event) -> None:
        object.__setattr__(event, "at", self.clock.now())
        await self.fanout.emit(event)

    async def _log(self, host: str | None, line: str, level: str = "info") -> None:
        await self._emit(LogLine(host=host, line=line, level=level))

    async def _enter(self, h: _Host, state: HostState, detail: str = "") -> None:
        h.state = state
        phase = state.phase
        if self.journal:
            # Journal first: what the operator has seen must survive the process being killed.
            await self.journal.step(self.plan.rollout_id, h.name, phase.value, detail)
        await self._emit(PhaseChanged(host=h.name, phase=phase, detail=detail))
        await self._progress(h, _FRACTION[phase])

    async def _progress(self, h: _Host, fraction: float) -> None:
        self._fractions[h.name] = max(fraction, 0.0)
        overall = sum(self._fractions.values()) / max(1, len(self.hosts))
        await self._emit(Progress(host=h.name, fraction=fraction, overall=min(overall, 1.0)))

    def _cancelled(self) -> bool:
        return bool(self.cancel is not None and self.cancel.is_set())

    # ---- evidence -----------------------------------------------------------------------
    async def _lb_view(self) -> dict[str, bool | None]:
        """The LB's health view, fetched at most once per interval (shared by all hosts)."""
        period = self.opt.lb_poll_seconds if self.opt.lb_poll_seconds is not None else self.settings.interval
        async with self._lb_lock:
            now = self.clock.now()
            if self._lb_fetched_at is None or now - self._lb_fetched_at >= period:
                self._lb_fetched_at = now
                try:
                    view = await self.cloud.lb_health()
                except Exception as exc:  # noqa: BLE001 - advisory: the counters still decide
                    view = {}
                    if not self._lb_error_reported:
                        self._lb_error_reported = True
                        await self._log(None, f"LB health view unavailable ({type(exc).__name__}: {exc}); "
                                              "relying on the service's counters", "warning")
                for h in self.hosts:
                    new = view.get(h.name)
                    if new != h.lb_view:
                        h.lb_view = new
                        await self._emit(HealthChanged(host=h.name, view="lb", healthy=new))
                self._lb_cache = dict(view)
            return self._lb_cache

    async def _lb_fresh(self, name: str, since: float) -> bool | None:
        """The LB's view of one host, only if fetched after `since` and at least two intervals
        later: the view is advisory and lags, so an older answer must not decide anything."""
        view = await self._lb_view()
        if self._lb_fetched_at is None or self._lb_fetched_at < since:
            return None
        if self.clock.now() - since < 2 * self.settings.interval:
            return None
        return view.get(name)

    async def _set_direct(self, h: _Host, healthy: bool | None, detail: str) -> None:
        if healthy != h.direct:
            h.direct = healthy
            await self._emit(HealthChanged(host=h.name, view="direct", healthy=healthy, detail=detail))

    def _recent_checkers(self, st: ServiceStats) -> list[HealthChecker]:
        return [c for c in st.health_checkers if c.last_age_seconds <= 2 * self.settings.interval]

    def _out_evidence(self, st: ServiceStats, lb: bool | None) -> tuple[bool, str]:
        """Has the LB stopped sending this (drained) service traffic? (service/README.md, "counter meanings")"""
        u = self.settings.unhealthy_threshold
        if st.in_flight > 0:
            return False, f"{st.in_flight} request(s) in flight"
        recent = self._recent_checkers(st)
        if recent:
            behind = [c for c in recent if c.consecutive_fail < u]
            if not behind:
                return True, "LB health checks failed " + ", ".join(
                    f"{c.consecutive_fail}x from {c.source}" for c in recent)
            return False, "LB checks failing " + ", ".join(
                f"{c.consecutive_fail}/{u} from {c.source}" for c in behind)
        if lb is False:
            return True, "no recent LB checks; the LB reports it unhealthy"
        quiet = st.last_request_age_seconds
        need = u * self.settings.interval + self.settings.timeout
        if quiet is None or quiet >= need:
            return True, f"no recent LB checks; no public traffic for {need:g}s"
        return False, f"no recent LB checks; last public request {quiet:.1f}s ago"

    def _in_evidence(self, st: ServiceStats, lb: bool | None, served_base: int) -> tuple[bool, str]:
        """Does the LB send this service traffic (again)?"""
        hthr = self.settings.healthy_threshold
        if st.draining:
            return False, "service is draining"
        if st.served > served_base:
            return True, f"receiving traffic ({st.served - served_base} request(s))"
        recent = self._recent_checkers(st)
        if recent:
            behind = [c for c in recent if c.consecutive_ok < hthr]
            if not behind:
                return True, "LB health checks passed " + ", ".join(
                    f"{c.consecutive_ok}x from {c.source}" for c in recent)
            return False, "LB checks passing " + ", ".join(
                f"{c.consecutive_ok}/{hthr} from {c.source}" for c in behind)
        if lb is True:
            return True, "the LB reports it healthy"
        return False, "no LB health checks seen yet"

    async def _container_gone(self, h: _Host) -> str | None:
        """A description if the app container is not running (crashed, exited, restarting)."""
        try:
            info = await h.rt.inspect()
        except Exception as exc:  # noqa: BLE001
            return f"cannot inspect the container: {type(exc).__name__}: {exc}"
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

    async def _tail(self, h: _Host, n: int = 5) -> str:
        try:
            lines = await h.rt.logs(tail=n)
        except Exception:  # noqa: BLE001 - logs are a courtesy in a failure message
            return ""
        return " | ".join(x.strip() for x in lines if x.strip())[-600:]

    # ---- waits --------------------------------------------------------------------------
    async def _wait_lb_out(self, h: _Host, *, cancellable: bool) -> str:
        bound = bound_lb_out(self.settings, self.deploy.margin_seconds)
        start = self.clock.now()
        deadline = start + bound
        seen = "no answer yet"
        confirm: int | None = None  # `served` when the evidence first held
        while True:
            if cancellable and self._cancelled():
                raise Cancelled()
            st = await self._stats(h)
            if st is None:
                gone = await self._container_gone(h)
                if gone:
                    return f"{gone}: it cannot receive traffic"
                seen = "admin port not answering"
                confirm = None
            else:
                lb = await self._lb_fresh(h.name, start)
                ok, why = self._out_evidence(st, lb)
                if not st.draining:
                    ok, why = False, "service is not draining (was it undrained?)"
                seen = why
                if ok and confirm is not None and st.served == confirm:
                    # Held over two polls with no new public request: the LB has really stopped.
                    return f"{why} after {self.clock.now() - start:.1f}s"
                confirm = st.served if ok else None
            if self.clock.now() >= deadline:
                raise StepFailed(Phase.WAITING_LB_OUT, f"LB still sending traffic after {bound:g}s: {seen}")
            await self.clock.sleep(self.opt.poll_seconds)

    async def _wait_healthy(self, h: _Host) -> str:
        bound = float(self.deploy.start_timeout_seconds)
        start = self.clock.now()
        deadline = start + bound
        seen = "no answer yet"
        next_inspect = start
        while True:
            try:
                probe = await h.rt.probe_health()
                ok = probe.healthy
                detail = f"{probe.status} {probe.detail}".strip() if probe.status else (probe.detail or "no answer")
            except Exception as exc:  # noqa: BLE001
                ok, detail = False, f"{type(exc).__name__}: {exc}"
            await self._set_direct(h, ok, detail)
            if ok:
                return f"healthy after {self.clock.now() - start:.1f}s"
            seen = detail
            if self.clock.now() >= next_inspect:
                # Inspecting costs a round trip; once a second is plenty to notice a crash.
                next_inspect = self.clock.now() + 1.0
                gone = await self._container_gone(h)
                if gone:
                    tail = await self._tail(h)
                    raise StepFailed(Phase.WAITING_HEALTHY, gone + (f"; last output: {tail}" if tail else ""))
            if self.clock.now() >= deadline:
                raise StepFailed(Phase.WAITING_HEALTHY, f"not healthy after {bound:g}s: last probe {seen}")
            await self.clock.sleep(self.opt.poll_seconds)

    async def _wait_lb_in(self, h: _Host, phase: Phase = Phase.WAITING_LB_IN, served_base: int | None = None) -> str:
        bound = bound_lb_in(self.settings, self.deploy.margin_seconds)
        start = self.clock.now()
        deadline = start + bound
        seen = "no answer yet"
        while True:
            st = await self._stats(h)
            if st is None:
                gone = await self._container_gone(h)
                if gone:
                    tail = await self._tail(h)
                    raise StepFailed(phase, gone + (f"; last output: {tail}" if tail else ""))
                seen = "admin port not answering"
            else:
                if served_base is None:
                    served_base = st.served
                lb = await self._lb_fresh(h.name, start)
                ok, why = self._in_evidence(st, lb, served_base)
                seen = why
                if ok:
                    return f"{why} after {self.clock.now() - start:.1f}s"
            if self.clock.now() >= deadline:
                raise StepFailed(phase, f"LB not sending traffic after {bound:g}s: {seen}")
            await self.clock.sleep(self.opt.poll_seconds)

    async def _stats(self, h: _Host) -> ServiceStats | None:
        try:
            return await h.rt.stats()
        except Exception:  # noqa: BLE001 - treated as "admin port not answering"
            return None

    async def _call(self, phase: Phase, coro, timeout: float):
        try:
            return await asyncio.wait_for(coro, timeout)
        except StepFailed:
            raise
        except ImageNotFound:
            raise
        except TimeoutError:
            raise StepFailed(phase, f"no result after {timeout:g}s") from None
        except Exception as exc:  # noqa: BLE001 - the runtime's message says what was run and seen
            raise StepFailed(phase, f"{type(exc).__name__}: {exc}") from None

    # ---- preflight ----------------------------------------------------------------------
    async def _others_in_lb(self, batch: list[_Host], since: float) -> tuple[bool, str]:
        names = {h.name for h in batch}
        others = [n for n in sorted(self.runtimes) if n not in names]
        if not others:
            return True, "single host"
        seen = []
        for n in others:
            try:
                st = await self.runtimes[n].stats()
            except Exception:  # noqa: BLE001
                st = None
            lb = await self._lb_fresh(n, since)
            if st is None:
                # No counters (e.g. an external host): the LB's own (fresh) view is all there is.
                if lb is True:
                    return True, f"{n} healthy in the LB"
                seen.append(f"{n}: admin port not answering, LB view {lb}")
                continue
            ok, why = self._in_evidence(st, lb, st.served + 1)  # counters decide, not traffic
            if ok:
                return True, f"{n}: {why}"
            seen.append(f"{n}: {why}")
        return False, "; ".join(seen)

    async def _wait_others_in_lb(self, batch: list[_Host]) -> None:
        bound = bound_lb_in(self.settings, self.deploy.margin_seconds)
        since = self.clock.now()
        deadline = since + bound
        waited = False
        while True:
            ok, seen = await self._others_in_lb(batch, since)
            if ok:
                return
            if not waited:
                waited = True
                await self._log(None, f"waiting for another host to be in the LB before taking "
                                      f"{', '.join(h.name for h in batch)} out ({seen})")
            if self.clock.now() >= deadline:
                raise StepFailed(Phase.PENDING, f"no other host healthy in the LB after {bound:g}s, "
                                                f"so none was taken out: {seen}")
            if self._cancelled():
                raise Cancelled()
            await self.clock.sleep(self.opt.poll_seconds)

    # ---- overlap: drain the next batch early ----------------------------------------------
    def _next_checks(self, st: ServiceStats, now: float) -> list[tuple[float, HealthChecker]]:
        """(time of the next check, checker) per recent LB checker source."""
        interval = self.settings.interval
        return [(now + max(0.0, interval - c.last_age_seconds), c) for c in self._recent_checkers(st)]

    async def _predict_in(self, batch: list[_Host]) -> float | None:
        """When the whole batch will have passed `healthy` checks, if every host is waiting for the
        LB with its checks seen passing (None: no prediction)."""
        hthr, interval = self.settings.healthy_threshold, self.settings.interval
        latest = None
        for h in batch:
            if h.phase != Phase.WAITING_LB_IN:
                return None
            st = await self._stats(h)
            if st is None or st.draining:
                return None
            nexts = self._next_checks(st, self.clock.now())
            if not nexts or any(c.consecutive_ok < 1 for _, c in nexts):
                return None
            for t, c in nexts:
                t_in = t + max(0, hthr - c.consecutive_ok - 1) * interval
                latest = t_in if latest is None else max(latest, t_in)
        return latest

    def _drain_window(self, st: ServiceStats, now: float, after: float) -> tuple[float, float] | None:
        """When to drain so that the `unhealthy`-th failing check (the LB takes it out) is the first
        check after `after`: (drain at, that check's time), or None."""
        u, interval = self.settings.unhealthy_threshold, self.settings.interval
        nexts = self._next_checks(st, now)
        if not nexts:
            return None
        lo, hi, out_at = now, None, 0.0
        for t, _ in nexts:
            k = max(0, int((after - t) // interval) + 1) if t <= after else 0
            c_out = t + k * interval  # this source's first check after `after`
            first_fail = c_out - (u - 1) * interval
            # drain between the check before first_fail and first_fail itself
            lo = max(lo, first_fail - interval)
            hi = first_fail if hi is None else min(hi, first_fail)
            out_at = max(out_at, c_out)
        if hi is None or hi - lo < interval / 3:
            return None  # sources disagree too much (several LB nodes): no early drain
        return (lo + hi) / 2, out_at

    async def _pre_drain(self, nxt: list[_Host], cur: list[_Host], over: asyncio.Event) -> None:
        try:
            await self._pre_drain_inner(nxt, cur, over)
        except Exception as exc:  # noqa: BLE001 - an optimisation: on any trouble, undo and go normal
            await self._log(None, f"early drain abandoned: {type(exc).__name__}: {exc}", "warning")
            await self._undo_pre_drain(nxt, "early drain abandoned")

    async def _pre_drain_inner(self, nxt: list[_Host], cur: list[_Host], over: asyncio.Event) -> None:
        interval, poll = self.settings.interval, self.opt.poll_seconds
        safety = min(0.5, interval / 4)
        plan: dict[str, tuple[float, float]] = {}
        while not plan:
            if over.is_set() or self._cancelled():
                return
            t_in = await self._predict_in(cur)
            if t_in is not None:
                now = self.clock.now()
                windows = {}
                for h in nxt:
                    if h.prev is None or h.prev.state != "running":
                        return
                    st = await self._stats(h)
                    w = None if st is None or st.draining else self._drain_window(st, now, t_in + safety)
                    if w is None:
                        return  # no phase to time it by: the normal path
                    windows[h.name] = w
                if all(at >= now for at, _ in windows.values()):
                    plan = windows
                    break
            await self.clock.sleep(poll)
        # Sleep until the drain time; the batch finishing first means no time is won: normal path.
        drain_at = min(at for at, _ in plan.values())
        guard = min(out for _, out in plan.values()) - min(1.0, interval / 3)
        while self.clock.now() < drain_at:
            if over.is_set() or self._cancelled():
                return
            await self.clock.sleep(min(poll, drain_at - self.clock.now()))
        for h in nxt:
            h.started_at = self.wallclock()
            names = ", ".join(c.name for c in cur)
            await self._enter(h, HostState.DRAINED_EARLY, f"early: leaves the LB after {names} "
                                                 f"{'is' if len(cur) == 1 else 'are'} back "
                                                 f"(~{plan[h.name][1] - self.clock.now():.1f}s)")
            await h.rt.drain()
        # Before the next batch's last failing check: is the current batch back? If not, undrain.
        while not all(c.state is HostState.DONE for c in cur):
            if self.clock.now() >= guard or (over.is_set() and not all(c.state is HostState.DONE for c in cur)) \
                    or self._cancelled():
                await self._undo_pre_drain(nxt, f"{', '.join(c.name for c in cur)} not back in time")
                return
            await self.clock.sleep(poll)

    async def _undo_pre_drain(self, nxt: list[_Host], why: str) -> None:
        """Undrain hosts drained early (before the LB took them out, by the guard's timing) and
        make sure the LB still sends them traffic."""
        for h in nxt:
            if not h.pre_drained:
                continue
            try:
                await h.rt.undrain()
                await self._enter(h, HostState.EARLY_UNDONE, f"early drain undone: {why}")
                seen = await self._wait_lb_in(h, Phase.PENDING)
                await self._log(h.name, f"undrained; still in the LB: {seen}")
            except Exception as exc:  # noqa: BLE001 - reported; its own cycle or status shows the rest
                await self._log(h.name, f"undoing the early drain: {type(exc).__name__}: {exc}", "warning")

    # ---- per host -----------------------------------------------------------------------
    async def _pull(self, h: _Host) -> None:
        await self._enter(h, HostState.PULLING, self.plan.image_ref)
        try:
            h.prev = await h.rt.inspect()
        except Exception as exc:
            raise StepFailed(Phase.PULLING,
                             f"cannot inspect the running container: {type(exc).__name__}: {exc}") from exc
        if h.prev is not None:
            h.prev_ref = h.prev.image_ref
        else:
            h.prev_ref = self.opt.fallback_prev.get(h.name)
        info = await self._call(Phase.PULLING, h.rt.pull(self.plan.image_ref),
                                self.deploy.pull_timeout_seconds + self.opt.step_timeout_extra)
        h.digest = info.digest
        await self._log(h.name, f"pulled {info.ref} ({info.digest})")
        await self._enter(h, HostState.PENDING, "image pulled; waiting its turn")

    async def _cycle(self, h: _Host) -> None:
        """Drain -> LB out -> stop -> run -> healthy -> LB in. Raises StepFailed or Cancelled."""
        h.started_at = h.started_at or self.wallclock()
        running = h.prev is not None and h.prev.state == "running"
        pre_drained = h.pre_drained
        if not pre_drained:
            await self._enter(h, HostState.DRAINING)
        if running:
            if not pre_drained:
                await self._call(Phase.DRAINING, h.rt.drain(), 30.0)
            await self._enter(h, HostState.WAITING_LB_OUT)
            why = await self._wait_lb_out(h, cancellable=True)
            await self._log(h.name, f"LB stopped sending traffic: {why}")
        else:
            await self._log(h.name, "no running container: nothing to drain")
        if self._cancelled():
            raise Cancelled()
        await self._enter(h, HostState.STOPPING)
        grace = float(self.deploy.stop_grace_seconds)
        await self._call(Phase.STOPPING, h.rt.stop(grace), grace + self.opt.step_timeout_extra)
        await self._enter(h, HostState.STARTING, self.plan.to_tag)
        await self._call(Phase.STARTING, h.rt.run(self.plan.image_ref, self.opt.env),
                         60.0 + self.opt.step_timeout_extra)
        await self._enter(h, HostState.WAITING_HEALTHY)
        why = await self._wait_healthy(h)
        await self._log(h.name, f"new container {why}")
        await self._enter(h, HostState.WAITING_LB_IN)
        why = await self._wait_lb_in(h, served_base=0)
        await self._log(h.name, f"LB sends traffic: {why}")
        await self._enter(h, HostState.DONE, self.plan.to_tag)

    async def _restore(self, h: _Host, reached: HostState) -> None:
        """Put the previous version back and wait until the LB sends it traffic; `reached` is
        where the cycle stopped. Raises StepFailed."""
        await self._enter(h, HostState.RESTORING, h.prev_ref or "")
        grace = float(self.deploy.stop_grace_seconds)
        if not reached.old_stopped:
            if h.prev is not None and h.prev.state == "running":
                await self._call(Phase.RESTORING, h.rt.undrain(), 30.0)
                why = await self._wait_lb_in(h, Phase.RESTORING)
                await self._log(h.name, f"undrained; {why}")
            return
        if reached.new_started:
            st = await self._stats(h)
            if st is not None and (st.served > 0 or st.in_flight > 0):
                # The LB already sent the new one traffic: take it out properly before stopping.
                await self._call(Phase.RESTORING, h.rt.drain(), 30.0)
                try:
                    await self._wait_lb_out(h, cancellable=False)
                except StepFailed as exc:
                    raise StepFailed(Phase.RESTORING, f"new container would not leave the LB: {exc.seen}") from exc
        await self._call(Phase.RESTORING, h.rt.stop(grace), grace + self.opt.step_timeout_extra)
        if not h.prev_ref:
            await self._log(h.name, "no previous container to restore: host left without one", "warning")
            return
        await self._call(Phase.RESTORING, h.rt.run(h.prev_ref, self.opt.env), 60.0 + self.opt.step_timeout_extra)
        try:
            await self._wait_healthy(h)
        except StepFailed as exc:
            raise StepFailed(Phase.RESTORING, f"previous version not healthy: {exc.seen}") from exc
        why = await self._wait_lb_in(h, Phase.RESTORING, served_base=0)
        await self._log(h.name, f"previous version {h.prev.tag if h.prev else h.prev_ref} back: {why}")

    async def _host(self, h: _Host) -> tuple[StepFailed | None, bool, str | None]:
        """Run one host to DONE or RESTORED. Returns (failure, cancelled, restore_error)."""
        failure: StepFailed | None = None
        cancelled = False
        try:
            await self._cycle(h)
            return None, False, None
        except StepFailed as exc:
            failure = exc
            reached = h.state
            await self._enter(h, HostState.FAILED, f"{exc.phase.value}: {exc.seen}")
            await self._log(h.name, f"failed at {exc.phase.value}: {exc.seen}", "error")
        except Cancelled:
            cancelled = True
            reached = h.state
            await self._log(h.name, "stop requested before the old container was stopped: restoring it", "warning")
        try:
            await self._restore(h, reached)
        except StepFailed as exc:
            await self._enter(h, HostState.RESTORE_FAILED, f"restore failed: {exc.seen}")
            await self._log(h.name, f"could not restore: {exc.seen}", "error")
            await self._journal_host(h, failure or StepFailed(Phase.RESTORING, "cancelled"), exc.seen)
            return failure, cancelled, exc.seen
        back = HostState.INTERRUPTED if cancelled and failure is None else HostState.RESTORED
        await self._enter(h, back, h.prev.tag if h.prev else "")
        return failure, cancelled, None

    async def _journal_host(self, h: _Host, failure: StepFailed | None, restore_error: str | None = None) -> None:
        if not self.journal:
            return
        seen = failure.seen if failure else ""
        if restore_error:
            seen = f"{seen}; restore failed: {restore_error}"
        await self.journal.host(
            self.plan.rollout_id, h.name, outcome=h.state.outcome, step=failure.phase.value if failure else None,
            from_tag=h.planned.from_tag, to_tag=self.plan.to_tag, digest=h.digest, seen=seen,
            started=h.started_at or self.wallclock())

    # ---- the rollout --------------------------------------------------------------------
    async def run(self) -> Outcome:
        self._t0 = self.clock.now()
        self._fractions: dict[str, float] = {h.name: 0.0 for h in self.hosts}
        await self._emit(RolloutPlanned(plan=self.plan))
        if self.journal:
            await self.journal.start(
                rollout_id=self.plan.rollout_id, action=self.plan.action, to_tag=self.plan.to_tag,
                image_ref=self.plan.image_ref, operator=self.operator, hosts=[h.name for h in self.hosts],
                from_tags={h.name: h.planned.from_tag for h in self.hosts}, batch_size=self.plan.batch_size,
                resumes=self.plan.resumes)
        for name in self.plan.unchanged:
            await self._log(name, f"already runs {self.plan.to_tag} and serves: not touched")
        if not self.hosts:
            return await self._finish(OutcomeStatus.SUCCESS,
                                      f"nothing to do: every host already runs {self.plan.to_tag}")

        # 1. Pull everywhere first: a tag that does not exist fails here, before anything stops.
        results = await asyncio.gather(*(self._pull_safe(h) for h in self.hosts))
        for h, err in zip(self.hosts, results, strict=True):
            if err is not None:
                for other in self.hosts:
                    if other.phase != Phase.FAILED:
                        await self._enter(other, HostState.SKIPPED, "pull failed elsewhere; nothing stopped")
                if isinstance(err, ImageNotFound):
                    return await self._finish(
                        OutcomeStatus.REFUSED,
                        f"{self.plan.to_tag} not found in the registry (pull on {h.name}): nothing was stopped",
                        failed=h, step=Phase.PULLING, seen=str(err) or "image not found", restored=True)
                return await self._finish(
                    OutcomeStatus.HALTED, f"pull failed on {h.name}: nothing was stopped",
                    failed=h, step=Phase.PULLING, seen=err.seen, restored=True)

        if self.opt.before_changes is not None:
            refused = await self._before_changes()
            if refused is not None:
                return refused

        # 2. Batches.
        batches: dict[int, list[_Host]] = {}
        for h in self.hosts:
            batches.setdefault(h.planned.batch, []).append(h)
        order = sorted(batches)
        for pos, index in enumerate(order):
            batch = batches[index]
            nxt = batches[order[pos + 1]] if pos + 1 < len(order) else []
            if self._cancelled():
                return await self._interrupted()
            # Only a batch that serves now can leave the LB without another host in it; hosts
            # that run nothing (a first deploy) are not in the LB, so there is nothing to protect.
            serving = any(h.prev is not None and h.prev.state == "running" for h in batch)
            if len(self.runtimes) > 1 and serving:
                try:
                    await self._wait_others_in_lb(batch)
                except Cancelled:
                    return await self._interrupted()
                except StepFailed as exc:
                    await self._log(None, exc.seen, "error")
                    await self._skip_rest_events()
                    return await self._finish(OutcomeStatus.HALTED, f"halted before {batch[0].name}: {exc.seen}",
                                              failed=batch[0], step=Phase.PENDING, seen=exc.seen, restored=True)
            await self._log(None, f"batch {index + 1}/{len(batches)}: {', '.join(h.name for h in batch)}")
            batch_over = asyncio.Event()
            pre = None
            if self.opt.overlap and nxt and len(self.runtimes) > len(nxt):
                pre = asyncio.create_task(self._pre_drain(nxt, batch, batch_over))
            try:
                results = await asyncio.gather(*(self._host(h) for h in batch))
            finally:
                batch_over.set()
                if pre is not None:
                    await pre  # undrains the next batch itself unless this batch is all done
            first_fail: tuple[_Host, StepFailed] | None = None
            restore_errors: list[tuple[_Host, str]] = []
            any_cancel = False
            for h, (failure, cancelled, restore_error) in zip(batch, results, strict=True):
                if restore_error is None:
                    await self._journal_host(h, failure)
                if failure and first_fail is None:
                    first_fail = (h, failure)
                if restore_error:
                    restore_errors.append((h, restore_error))
                any_cancel = any_cancel or cancelled
            if restore_errors:
                await self._skip_rest_events()
                h, err = restore_errors[0]
                f = first_fail[1] if first_fail else StepFailed(Phase.RESTORING, err)
                return await self._finish(
                    OutcomeStatus.ERROR,
                    f"{h.name} failed at {f.phase.value} and could NOT be restored: {err}",
                    failed=h, step=f.phase, seen=f"{f.seen}; restore: {err}", restored=False)
            if first_fail:
                await self._skip_rest_events()
                h, f = first_fail
                return await self._finish(OutcomeStatus.HALTED, self._halt_message(h, f),
                                          failed=h, step=f.phase, seen=f.seen, restored=True)
            if any_cancel or self._cancelled():
                return await self._interrupted()
        return await self._finish(OutcomeStatus.SUCCESS, "")

    async def _before_changes(self) -> Outcome | None:
        assert self.opt.before_changes is not None
        try:
            await self.opt.before_changes(self._log)
            return None
        except ChangesRefused as exc:
            for h in self.hosts:
                await self._enter(h, HostState.SKIPPED, "refused before any host changed")
            return await self._finish(OutcomeStatus.REFUSED, f"{exc.message}: nothing was changed",
                                      seen=exc.seen, restored=True)

    async def _pull_safe(self, h: _Host):
        try:
            await self._pull(h)
            return None
        except ImageNotFound as exc:
            await self._enter(h, HostState.FAILED, f"image not found: {exc}")
            return exc
        except StepFailed as exc:
            await self._enter(h, HostState.FAILED, exc.seen)
            return exc

    async def _skip_rest_events(self) -> None:
        await self._undo_pre_drain([h for h in self.hosts if h.pre_drained], "the rollout stops here")
        for h in self.hosts:
            if h.state is HostState.EARLY_UNDONE:
                await self._enter(h, HostState.SKIPPED_UNDONE,
                                  "drained early and undrained before the LB took it out; not changed")
            elif h.state is HostState.PENDING:
                await self._enter(h, HostState.SKIPPED, "rollout halted earlier")

    async def _interrupted(self) -> Outcome:
        await self._skip_rest_events()
        return await self._finish(OutcomeStatus.INTERRUPTED, "")

    def _halt_message(self, h: _Host, f: StepFailed) -> str:
        prev = h.prev.tag if h.prev else "its previous version"
        return (f"halted: {h.name} failed at {f.phase.value} ({f.seen}); {h.name} runs {prev} again "
                f"and is back in the LB")

    async def _fleet_now(self) -> dict[str, str | None]:
        out: dict[str, str | None] = {}
        for name in sorted(self.runtimes):
            try:
                info = await self.runtimes[name].inspect()
                out[name] = info.tag if info is not None and info.state == "running" else None
            except Exception:  # noqa: BLE001
                out[name] = None
        return out

    async def _finish(self, status: OutcomeStatus, message: str, *, failed: _Host | None = None,
                      step: Phase | None = None, seen: str = "", restored: bool = False) -> Outcome:
        fleet = await self._fleet_now()
        duration = self.clock.now() - self._t0
        done = [h.name for h in self.hosts if h.state is HostState.DONE]
        untouched = [h.name for h in self.hosts if h.state in (HostState.PENDING, HostState.SKIPPED)]
        undone = [h.name for h in self.hosts if h.early_undone]
        if status == OutcomeStatus.SUCCESS and not message:
            message = (f"{self.plan.to_tag} runs on {len(fleet)} host(s); "
                       f"deployed to {', '.join(done)} in {duration:.0f}s")
        elif status == OutcomeStatus.INTERRUPTED:
            message = (f"stopped on request after {duration:.0f}s: "
                       f"{', '.join(done) or 'no host'} on {self.plan.to_tag}; the host in progress was finished "
                       f"or restored; {', '.join(untouched) or 'none'} not touched")
        if untouched and status in (OutcomeStatus.HALTED, OutcomeStatus.ERROR):
            message += f"; not touched: {', '.join(untouched)}"
        if undone:
            message += f"; drained early then undrained, never out of the LB: {', '.join(undone)}"
        message += " | fleet now: " + ", ".join(f"{n}={t or 'nothing'}" for n, t in fleet.items())
        outcome = Outcome(status=status, message=message, to_tag=self.plan.to_tag,
                          failed_host=failed.name if failed else None, failed_step=step, seen=seen,
                          restored=restored, fleet=fleet, duration_seconds=duration,
                          rollout_id=self.plan.rollout_id)
        if self.journal:
            await self.journal.end(self.plan.rollout_id, status.value, message, fleet)
        await self._emit(RolloutFinished(outcome=outcome))
        return outcome
