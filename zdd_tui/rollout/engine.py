"""The rolling deploy: one batch loop for both strategies.

Pull everywhere first (so a missing tag fails before anything changes), then batch after batch;
the first host that fails halts the rollout (hosts not yet reached are not touched); a
cooperative cancel finishes or restores the host in progress and stops. Every step goes to the
journal before it shows, and the outcome says where each host stands ("fleet now").

What happens to one host is the strategy's: `lbdrain.py` (drain it out of the load balancer,
replace, bring it back) or `localswap.py` (a proxy on the host moves traffic from the old
container to the new one; the host never leaves the LB). The plan names the strategy.

No Textual, SSH, pydo or proxy client in here: only the interfaces in `interfaces.py`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, TypeVar

from zdd_tui.config import DeployConfig
from zdd_tui.events import Event, Listener, LogLine
from zdd_tui.rollout.canary import Soak, holds
from zdd_tui.rollout.events import (
    CanaryReport,
    CanaryState,
    CanaryUpdate,
    HealthChanged,
    Outcome,
    OutcomeStatus,
    Phase,
    PhaseChanged,
    Plan,
    Progress,
    RolloutFinished,
    RolloutPlanned,
)
from zdd_tui.rollout.interfaces import (
    Clock,
    Cloud,
    HostRuntime,
    ImageNotFound,
    LBSettings,
    ServiceStats,
    SystemClock,
)
from zdd_tui.rollout.journal import Journal
from zdd_tui.rollout.lbdrain import LbDrain
from zdd_tui.rollout.listeners import Fanout
from zdd_tui.rollout.localswap import LocalSwap
from zdd_tui.rollout.strategy import (
    FRACTION,
    Cancelled,
    ChangesRefused,
    EngineOptions,
    HostResult,
    HostRun,
    HostState,
    LogFn,
    Refused,
    StepFailed,
    Strategy,
)
from zdd_tui.rollout.watch import Watch

__all__ = ["Cancelled", "ChangesRefused", "Engine", "EngineOptions", "HostState", "LogFn", "StepFailed"]

T = TypeVar("T")

STRATEGIES: dict[str, type[Strategy]] = {LbDrain.name: LbDrain, LocalSwap.name: LocalSwap}


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
        adopt = dict(plan.adopt)
        self.hosts = [HostRun(planned=p, rt=runtimes[p.name], adopt=adopt.get(p.name)) for p in plan.hosts]
        self.strategy: Strategy = STRATEGIES[plan.strategy](self)
        self._lb_cache: dict[str, bool | None] = {}
        self._lb_fetched_at: float | None = None
        self._lb_lock = asyncio.Lock()
        self._lb_error_reported = False
        self._t0 = 0.0
        self._fractions: dict[str, float] = {}
        self.watch: Watch | None = None  # local-swap: every host's traffic, sampled
        self._behind: dict[str, asyncio.Task[None]] = {}  # host -> the work finishing it beside later batches
        self.canary: CanaryReport | None = None  # the canary gate's verdict, once judged

    # ---- events -------------------------------------------------------------------------
    async def emit(self, event: Event) -> None:
        object.__setattr__(event, "at", self.clock.now())
        await self.fanout.emit(event)

    async def log(self, host: str | None, line: str, level: str = "info") -> None:
        await self.emit(LogLine(host=host, line=line, level=level))

    async def enter(self, h: HostRun, state: HostState, detail: str = "") -> None:
        h.state = state
        phase = state.phase
        if self.journal:
            # Journal first: what the operator has seen must survive the process being killed.
            await self.journal.step(self.plan.rollout_id, h.name, phase.value, detail)
        await self.emit(PhaseChanged(host=h.name, phase=phase, detail=detail))
        await self.progress(h, FRACTION[phase])

    async def progress(self, h: HostRun, fraction: float) -> None:
        self._fractions[h.name] = max(fraction, 0.0)
        overall = sum(self._fractions.values()) / max(1, len(self.hosts))
        await self.emit(Progress(host=h.name, fraction=fraction, overall=min(overall, 1.0)))

    def cancelled(self) -> bool:
        return bool(self.cancel is not None and self.cancel.is_set())

    def soaking(self, h: HostRun) -> bool:
        """`h` is a canary host and the canary has not been judged yet: it soaks after its switch."""
        return self.watch is not None and self.canary is None and h.name in self.plan.canary_hosts \
            and self.plan.canary_seconds > 0

    def behind(self, h: HostRun, work: Awaitable[None]) -> None:
        """`work` finishes `h` while the next batch goes on (local-swap: its old container, which
        serves nothing any more, stops and is pruned). It must not fail the rollout: what goes
        wrong in it is a warning. The host is journaled when it ends, and all such work ends
        before the outcome is made."""
        self._behind[h.name] = asyncio.ensure_future(self._finish_behind(h, work))

    async def _finish_behind(self, h: HostRun, work: Awaitable[None]) -> None:
        try:
            await work
        except Exception as exc:  # noqa: BLE001 - traffic already moved: said, never a halt
            await self.log(h.name, f"after the switch: {type(exc).__name__}: {exc}", "warning")
        await self.journal_host(h, None)

    async def _wait_behind(self) -> None:
        tasks = [t for t in self._behind.values() if not t.done()]
        if tasks:
            await asyncio.gather(*tasks)

    def switched(self, host: str, slot: str, tag: str | None) -> None:
        if self.watch is not None:
            self.watch.switched(host, slot, tag)

    # ---- what the engine sees -------------------------------------------------------------
    async def lb_view(self) -> dict[str, bool | None]:
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
                        await self.log(None, f"LB health view unavailable ({type(exc).__name__}: {exc}); "
                                              "relying on the service's counters", "warning")
                for h in self.hosts:
                    new = view.get(h.name)
                    if new != h.lb_view:
                        h.lb_view = new
                        await self.emit(HealthChanged(host=h.name, view="lb", healthy=new))
                self._lb_cache = dict(view)
            return self._lb_cache

    async def lb_fresh(self, name: str, since: float) -> bool | None:
        """The LB's view of one host, only if fetched after `since` and at least two intervals
        later: the view is advisory and lags, so an older answer must not decide anything."""
        view = await self.lb_fresh_view(since)
        return None if view is None else view.get(name)

    async def lb_fresh_view(self, since: float) -> dict[str, bool | None] | None:
        """The LB's whole view under the same rule as `lb_fresh`; None while not fresh enough."""
        view = await self.lb_view()
        if self._lb_fetched_at is None or self._lb_fetched_at < since:
            return None
        if self.clock.now() - since < 2 * self.settings.interval:
            return None
        return view

    async def set_direct(self, h: HostRun, healthy: bool | None, detail: str) -> None:
        if healthy != h.direct:
            h.direct = healthy
            await self.emit(HealthChanged(host=h.name, view="direct", healthy=healthy, detail=detail))

    async def tail(self, h: HostRun, n: int = 5) -> str:
        try:
            lines = await h.rt.logs(tail=n)
        except Exception:  # noqa: BLE001 - logs are a courtesy in a failure message
            return ""
        return " | ".join(x.strip() for x in lines if x.strip())[-600:]

    async def stats(self, h: HostRun) -> ServiceStats | None:
        try:
            return await h.rt.stats()
        except Exception:  # noqa: BLE001 - treated as "admin port not answering"
            return None

    async def call(self, phase: Phase, coro: Awaitable[T], timeout: float) -> T:
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

    # ---- per host -----------------------------------------------------------------------
    async def _pull(self, h: HostRun) -> None:
        await self.enter(h, HostState.PULLING, self.plan.image_ref)
        await self.strategy.inspect(h)
        info = await self.call(Phase.PULLING, h.rt.pull(self.plan.image_ref),
                                self.deploy.pull_timeout_seconds + self.opt.step_timeout_extra)
        h.digest = info.digest
        if info.present:
            await self.log(h.name, f"{info.ref} ({info.digest}) present on the host, not pulled")
        else:
            await self.log(h.name, f"pulled {info.ref} ({info.digest})")
        await self.enter(h, HostState.PENDING, "image pulled; waiting its turn")

    async def journal_host(self, h: HostRun, failure: StepFailed | None, restore_error: str | None = None) -> None:
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
        try:
            return await self._run()
        finally:
            await self._stop_watch()
            for task in self._behind.values():  # only left unfinished when the run itself was cancelled
                task.cancel()

    async def _stop_watch(self) -> None:
        watch, self.watch = self.watch, None
        if watch is not None:
            await watch.stop()

    async def _run(self) -> Outcome:
        self._t0 = self.clock.now()
        self._fractions = {h.name: 0.0 for h in self.hosts}
        await self.emit(RolloutPlanned(plan=self.plan))
        if self.journal:
            await self.journal.start(
                rollout_id=self.plan.rollout_id, action=self.plan.action, to_tag=self.plan.to_tag,
                image_ref=self.plan.image_ref, operator=self.operator, hosts=[h.name for h in self.hosts],
                from_tags={h.name: h.planned.from_tag for h in self.hosts}, batch_size=self.plan.batch_size,
                resumes=self.plan.resumes, strategy=self.plan.strategy)
        for name in self.plan.unchanged:
            await self.log(name, f"already runs {self.plan.to_tag} and serves: not touched")
        if not self.hosts:
            return await self._finish(OutcomeStatus.SUCCESS,
                                      f"nothing to do: every host already runs {self.plan.to_tag}")

        # 0. What the strategy must see before anything changes on any host.
        try:
            await self.strategy.preflight()
        except Refused as exc:
            failed = next((h for h in self.hosts if h.name == exc.host), None)
            for h in self.hosts:
                await self.enter(h, HostState.SKIPPED, "refused before anything changed")
            return await self._finish(OutcomeStatus.REFUSED, exc.message, failed=failed,
                                      step=Phase.PENDING if failed else None, seen=exc.seen, restored=True)
        if self.plan.strategy == LocalSwap.name:
            self.watch = Watch(self, self.runtimes)
            self.watch.start()

        # 1. Pull everywhere first: a tag that does not exist fails here, before anything stops.
        results = await asyncio.gather(*(self._pull_safe(h) for h in self.hosts))
        for h, err in zip(self.hosts, results, strict=True):
            if err is not None:
                for other in self.hosts:
                    if other.phase != Phase.FAILED:
                        await self.enter(other, HostState.SKIPPED, "pull failed elsewhere; nothing stopped")
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
        batches: dict[int, list[HostRun]] = {}
        for h in self.hosts:
            batches.setdefault(h.planned.batch, []).append(h)
        order = sorted(batches)
        for pos, index in enumerate(order):
            batch = batches[index]
            nxt = batches[order[pos + 1]] if pos + 1 < len(order) else []
            if self.cancelled():
                return await self._interrupted()
            try:
                await self.strategy.before_batch(batch)
            except Cancelled:
                return await self._interrupted()
            except StepFailed as exc:
                await self.log(None, exc.seen, "error")
                await self._skip_rest_events()
                return await self._finish(OutcomeStatus.HALTED, f"halted before {batch[0].name}: {exc.seen}",
                                          failed=batch[0], step=Phase.PENDING, seen=exc.seen, restored=True)
            await self.log(None, f"batch {index + 1}/{len(batches)}: {', '.join(h.name for h in batch)}")
            batch_over = asyncio.Event()
            aside = self.strategy.alongside(batch, nxt, batch_over)
            try:
                host_results = await asyncio.gather(*(self.strategy.host(h) for h in batch))
            finally:
                batch_over.set()
                if aside is not None:
                    await aside  # undoes its own work unless this batch is all done
            halt: str | None = None
            if any(h.state is HostState.SOAKING for h in batch):
                host_results, halt = await self._canary(batch, host_results)
            first_fail: tuple[HostRun, StepFailed] | None = None
            restore_errors: list[tuple[HostRun, str]] = []
            any_cancel = False
            for h, (failure, cancelled, restore_error) in zip(batch, host_results, strict=True):
                if restore_error is None and h.name not in self._behind:
                    await self.journal_host(h, failure)
                if failure and first_fail is None:
                    first_fail = (h, failure)
                if restore_error:
                    restore_errors.append((h, restore_error))
                any_cancel = any_cancel or cancelled
            if restore_errors:
                await self._skip_rest_events()
                h, why = restore_errors[0]
                f = first_fail[1] if first_fail else StepFailed(Phase.RESTORING, why)
                return await self._finish(
                    OutcomeStatus.ERROR,
                    f"{h.name} failed at {f.phase.value} and could NOT be restored: {why}",
                    failed=h, step=f.phase, seen=f"{f.seen}; restore: {why}", restored=False)
            if first_fail:
                await self._skip_rest_events()
                h, f = first_fail
                return await self._finish(OutcomeStatus.HALTED, self.strategy.halt_message(h, f),
                                          failed=h, step=f.phase, seen=f.seen, restored=True)
            if halt is not None:
                await self._skip_rest_events()
                return await self._finish(OutcomeStatus.HALTED, halt, failed=batch[0], step=Phase.SOAKING,
                                          seen=self.canary.reason if self.canary else "", restored=True)
            if any_cancel or self.cancelled():
                return await self._interrupted()
        return await self._finish(OutcomeStatus.SUCCESS, "")

    async def _canary(self, batch: list[HostRun], results: list[HostResult]) -> tuple[list[HostResult], str | None]:
        """The canary batch switched and its old containers still run: soak, judge, then finish
        those hosts or put them back. The batch's results with theirs replaced, and the outcome's
        message when the verdict halts the rollout."""
        soaking = [h for h in batch if h.state is HostState.SOAKING]
        trouble = any(f is not None or c or err for f, c, err in results) or self.cancelled()
        verdict: CanaryReport | None = None
        halt: str | None = None
        if trouble:
            why = "the rest of its batch did not finish: back on the old version, not judged"
            cancelled = self.cancelled()
        else:
            assert self.watch is not None
            canary = tuple(h.name for h in soaking)
            baseline = tuple(h.name for h in self.hosts if h.name not in canary and h.proxy is not None
                             and h.proxy.installed and h.proxy.active_slot is not None)
            verdict = await Soak(self, self.watch, canary, baseline).run()
            cancelled = verdict is None
            why = "stop requested during the canary's soak: back on the old version"
        if verdict is not None:
            self.canary = verdict
            for h in soaking:
                if self.journal:
                    await self.journal.step(self.plan.rollout_id, h.name, "canary",
                                            f"{verdict.state.value}: {verdict.reason}")
            await self.emit(CanaryUpdate(report=verdict))
            cfg = self.deploy.canary
            if verdict.state is CanaryState.INSUFFICIENT and holds(verdict.state, cfg):
                await self.log(None, f"canary not judged ({verdict.reason}); continuing", "warning")
            if not holds(verdict.state, cfg):
                old = ", ".join(sorted({h.prev.tag for h in soaking if h.prev is not None})) or "the old version"
                what = ("judged the new version worse" if verdict.state is CanaryState.FAILED
                        else "could not judge the new version (on_insufficient_traffic: halt)")
                halt = (f"the canary {what}: {verdict.reason}; {', '.join(h.name for h in soaking)} back on {old}, "
                        f"{self.plan.to_tag} not deployed further")
                why = f"canary {verdict.state.value}: back on the old version"
        keep = verdict is not None and halt is None
        settled = await asyncio.gather(*(
            self.strategy.finish_canary(h) if keep else self.strategy.revert_canary(h, why, cancelled)
            for h in soaking))
        back = dict(zip((h.name for h in soaking), settled, strict=True))
        out = [back.get(h.name, r) for h, r in zip(batch, results, strict=True)]
        return out, halt

    async def _before_changes(self) -> Outcome | None:
        assert self.opt.before_changes is not None
        try:
            await self.opt.before_changes(self.log)
            return None
        except ChangesRefused as exc:
            for h in self.hosts:
                await self.enter(h, HostState.SKIPPED, "refused before any host changed")
            return await self._finish(OutcomeStatus.REFUSED, f"{exc.message}: nothing was changed",
                                      seen=exc.seen, restored=True)

    async def _pull_safe(self, h: HostRun) -> ImageNotFound | StepFailed | None:
        try:
            await self._pull(h)
            return None
        except ImageNotFound as exc:
            await self.enter(h, HostState.FAILED, f"image not found: {exc}")
            return exc
        except StepFailed as exc:
            await self.enter(h, HostState.FAILED, exc.seen)
            return exc

    async def _skip_rest_events(self) -> None:
        await self.strategy.wind_down()
        for h in self.hosts:
            if h.state is HostState.EARLY_UNDONE:
                await self.enter(h, HostState.SKIPPED_UNDONE,
                                  "drained early and undrained before the LB took it out; not changed")
            elif h.state is HostState.PENDING:
                await self.enter(h, HostState.SKIPPED, "rollout halted earlier")

    async def _interrupted(self) -> Outcome:
        await self._skip_rest_events()
        return await self._finish(OutcomeStatus.INTERRUPTED, "")

    async def _fleet_now(self) -> dict[str, str | None]:
        async def one(rt: HostRuntime) -> str | None:
            try:
                return await self.strategy.fleet_tag(rt)
            except Exception:  # noqa: BLE001
                return None

        names = sorted(self.runtimes)
        return dict(zip(names, await asyncio.gather(*(one(self.runtimes[n]) for n in names)), strict=True))

    async def _finish(self, status: OutcomeStatus, message: str, *, failed: HostRun | None = None,
                      step: Phase | None = None, seen: str = "", restored: bool = False) -> Outcome:
        await self._wait_behind()
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
                          rollout_id=self.plan.rollout_id, canary=self.canary)
        await self._stop_watch()
        if self.journal:
            await self.journal.end(self.plan.rollout_id, status.value, message, fleet)
        await self.emit(RolloutFinished(outcome=outcome))
        return outcome
