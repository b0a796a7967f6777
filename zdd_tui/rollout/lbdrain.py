"""The "lb-drain" strategy: each host leaves the load balancer, is replaced, and comes back.

Per host: drain (the service fails its health checks) -> wait until the LB really stopped sending
traffic -> stop (SIGTERM, grace) -> run new -> wait for its own health -> wait until the LB sends
it traffic again. Every wait is bounded by the LB's own settings plus margin, and ends as soon as
the evidence is there (`evidence.py`); none is a fixed sleep. Needs the service's admin contract.

On a failure the host goes back to its previous image (or is undrained if it was not stopped yet)
and must be back in the LB. A cancel restores a host that was not stopped yet and finishes one
that was. Batches overlap: the next one is drained while the current one collects its last
passing checks (`EngineOptions.overlap`).
"""

from __future__ import annotations

import asyncio

from zdd_tui.rollout.events import Phase
from zdd_tui.rollout.evidence import drain_window, in_evidence, next_checks, out_evidence
from zdd_tui.rollout.interfaces import HostRuntime
from zdd_tui.rollout.plan import bound_lb_in, bound_lb_out
from zdd_tui.rollout.strategy import (
    Cancelled,
    HostResult,
    HostRun,
    HostState,
    StepFailed,
    Strategy,
    not_running,
)


class LbDrain(Strategy):
    name = "lb-drain"

    async def inspect(self, h: HostRun) -> None:
        try:
            h.prev = await h.rt.inspect()
        except Exception as exc:
            raise StepFailed(Phase.PULLING,
                             f"cannot inspect the running container: {type(exc).__name__}: {exc}") from exc
        h.prev_ref = h.prev.image_ref if h.prev is not None else self.e.opt.fallback_prev.get(h.name)

    async def before_batch(self, batch: list[HostRun]) -> None:
        # Only a batch that serves now can leave the LB without another host in it; hosts that run
        # nothing (a first deploy) are not in the LB, so there is nothing to protect.
        serving = any(h.prev is not None and h.prev.state == "running" for h in batch)
        if len(self.e.runtimes) > 1 and serving:
            await self._wait_others_in_lb(batch)

    def alongside(self, batch: list[HostRun], nxt: list[HostRun], over: asyncio.Event) -> asyncio.Task | None:
        if self.e.opt.overlap and nxt and len(self.e.runtimes) > len(nxt):
            return asyncio.create_task(self._pre_drain(nxt, batch, over))
        return None

    async def wind_down(self) -> None:
        await self._undo_pre_drain([h for h in self.e.hosts if h.pre_drained], "the rollout stops here")

    def halt_message(self, h: HostRun, f: StepFailed) -> str:
        prev = h.prev.tag if h.prev else "its previous version"
        return (f"halted: {h.name} failed at {f.phase.value} ({f.seen}); {h.name} runs {prev} again "
                f"and is back in the LB")

    async def fleet_tag(self, rt: HostRuntime) -> str | None:
        info = await rt.inspect()
        return info.tag if info is not None and info.state == "running" else None

    async def _container_gone(self, h: HostRun) -> str | None:
        """A description if the app container is not running (crashed, exited, restarting)."""
        try:
            info = await h.rt.inspect()
        except Exception as exc:  # noqa: BLE001
            return f"cannot inspect the container: {type(exc).__name__}: {exc}"
        return not_running(info)

    # ---- waits --------------------------------------------------------------------------
    async def _wait_lb_out(self, h: HostRun, *, cancellable: bool) -> str:
        bound = bound_lb_out(self.e.settings, self.e.deploy.margin_seconds)
        start = self.e.clock.now()
        deadline = start + bound
        seen = "no answer yet"
        confirm: int | None = None  # `served` when the evidence first held
        while True:
            if cancellable and self.e.cancelled():
                raise Cancelled()
            st = await self.e.stats(h)
            if st is None:
                gone = await self._container_gone(h)
                if gone:
                    return f"{gone}: it cannot receive traffic"
                seen = "admin port not answering"
                confirm = None
            else:
                lb = await self.e.lb_fresh(h.name, start)
                ok, why = out_evidence(st, lb, self.e.settings)
                if not st.draining:
                    ok, why = False, "service is not draining (was it undrained?)"
                seen = why
                if ok and confirm is not None and st.served == confirm:
                    # Held over two polls with no new public request: the LB has really stopped.
                    return f"{why} after {self.e.clock.now() - start:.1f}s"
                confirm = st.served if ok else None
            if self.e.clock.now() >= deadline:
                raise StepFailed(Phase.WAITING_LB_OUT, f"LB still sending traffic after {bound:g}s: {seen}")
            await self.e.clock.sleep(self.e.opt.poll_seconds)

    async def _wait_healthy(self, h: HostRun) -> str:
        bound = float(self.e.deploy.start_timeout_seconds)
        start = self.e.clock.now()
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
            await self.e.set_direct(h, ok, detail)
            if ok:
                return f"healthy after {self.e.clock.now() - start:.1f}s"
            seen = detail
            if self.e.clock.now() >= next_inspect:
                # Inspecting costs a round trip; once a second is plenty to notice a crash.
                next_inspect = self.e.clock.now() + 1.0
                gone = await self._container_gone(h)
                if gone:
                    tail = await self.e.tail(h)
                    raise StepFailed(Phase.WAITING_HEALTHY, gone + (f"; last output: {tail}" if tail else ""))
            if self.e.clock.now() >= deadline:
                raise StepFailed(Phase.WAITING_HEALTHY, f"not healthy after {bound:g}s: last probe {seen}")
            await self.e.clock.sleep(self.e.opt.poll_seconds)

    async def _wait_lb_in(self, h: HostRun, phase: Phase = Phase.WAITING_LB_IN, served_base: int | None = None) -> str:
        bound = bound_lb_in(self.e.settings, self.e.deploy.margin_seconds)
        start = self.e.clock.now()
        deadline = start + bound
        seen = "no answer yet"
        while True:
            st = await self.e.stats(h)
            if st is None:
                gone = await self._container_gone(h)
                if gone:
                    tail = await self.e.tail(h)
                    raise StepFailed(phase, gone + (f"; last output: {tail}" if tail else ""))
                seen = "admin port not answering"
            else:
                if served_base is None:
                    served_base = st.served
                lb = await self.e.lb_fresh(h.name, start)
                ok, why = in_evidence(st, lb, served_base, self.e.settings)
                seen = why
                if ok:
                    return f"{why} after {self.e.clock.now() - start:.1f}s"
            if self.e.clock.now() >= deadline:
                raise StepFailed(phase, f"LB not sending traffic after {bound:g}s: {seen}")
            await self.e.clock.sleep(self.e.opt.poll_seconds)

    # ---- preflight ----------------------------------------------------------------------
    async def _others_in_lb(self, batch: list[HostRun], since: float) -> tuple[bool, str]:
        names = {h.name for h in batch}
        others = [n for n in sorted(self.e.runtimes) if n not in names]
        if not others:
            return True, "single host"
        seen = []
        for n in others:
            try:
                st = await self.e.runtimes[n].stats()
            except Exception:  # noqa: BLE001
                st = None
            lb = await self.e.lb_fresh(n, since)
            if st is None:
                # No counters (e.g. an external host): the LB's own (fresh) view is all there is.
                if lb is True:
                    return True, f"{n} healthy in the LB"
                seen.append(f"{n}: admin port not answering, LB view {lb}")
                continue
            ok, why = in_evidence(st, lb, st.served + 1, self.e.settings)  # counters decide, not traffic
            if ok:
                return True, f"{n}: {why}"
            seen.append(f"{n}: {why}")
        return False, "; ".join(seen)

    async def _wait_others_in_lb(self, batch: list[HostRun]) -> None:
        bound = bound_lb_in(self.e.settings, self.e.deploy.margin_seconds)
        since = self.e.clock.now()
        deadline = since + bound
        waited = False
        while True:
            ok, seen = await self._others_in_lb(batch, since)
            if ok:
                return
            if not waited:
                waited = True
                await self.e.log(None, f"waiting for another host to be in the LB before taking "
                                      f"{', '.join(h.name for h in batch)} out ({seen})")
            if self.e.clock.now() >= deadline:
                raise StepFailed(Phase.PENDING, f"no other host healthy in the LB after {bound:g}s, "
                                                f"so none was taken out: {seen}")
            if self.e.cancelled():
                raise Cancelled()
            await self.e.clock.sleep(self.e.opt.poll_seconds)

    # ---- overlap: drain the next batch early ----------------------------------------------
    async def _predict_in(self, batch: list[HostRun]) -> float | None:
        """When the whole batch will have passed `healthy` checks, if every host is waiting for the
        LB with its checks seen passing (None: no prediction)."""
        hthr, interval = self.e.settings.healthy_threshold, self.e.settings.interval
        latest = None
        for h in batch:
            if h.phase != Phase.WAITING_LB_IN:
                return None
            st = await self.e.stats(h)
            if st is None or st.draining:
                return None
            nexts = next_checks(st, self.e.clock.now(), self.e.settings)
            if not nexts or any(c.consecutive_ok < 1 for _, c in nexts):
                return None
            for t, c in nexts:
                t_in = t + max(0, hthr - c.consecutive_ok - 1) * interval
                latest = t_in if latest is None else max(latest, t_in)
        return latest

    async def _pre_drain(self, nxt: list[HostRun], cur: list[HostRun], over: asyncio.Event) -> None:
        try:
            await self._pre_drain_inner(nxt, cur, over)
        except Exception as exc:  # noqa: BLE001 - an optimisation: on any trouble, undo and go normal
            await self.e.log(None, f"early drain abandoned: {type(exc).__name__}: {exc}", "warning")
            await self._undo_pre_drain(nxt, "early drain abandoned")

    async def _pre_drain_inner(self, nxt: list[HostRun], cur: list[HostRun], over: asyncio.Event) -> None:
        interval, poll = self.e.settings.interval, self.e.opt.poll_seconds
        safety = min(0.5, interval / 4)
        plan: dict[str, tuple[float, float]] = {}
        while not plan:
            if over.is_set() or self.e.cancelled():
                return
            t_in = await self._predict_in(cur)
            if t_in is not None:
                now = self.e.clock.now()
                windows = {}
                for h in nxt:
                    if h.prev is None or h.prev.state != "running":
                        return
                    st = await self.e.stats(h)
                    w = None if st is None or st.draining else drain_window(st, now, t_in + safety, self.e.settings)
                    if w is None:
                        return  # no phase to time it by: the normal path
                    windows[h.name] = w
                if all(at >= now for at, _ in windows.values()):
                    plan = windows
                    break
            await self.e.clock.sleep(poll)
        # Sleep until the drain time; the batch finishing first means no time is won: normal path.
        drain_at = min(at for at, _ in plan.values())
        guard = min(out for _, out in plan.values()) - min(1.0, interval / 3)
        while self.e.clock.now() < drain_at:
            if over.is_set() or self.e.cancelled():
                return
            await self.e.clock.sleep(min(poll, drain_at - self.e.clock.now()))
        for h in nxt:
            h.started_at = self.e.wallclock()
            names = ", ".join(c.name for c in cur)
            await self.e.enter(h, HostState.DRAINED_EARLY, f"early: leaves the LB after {names} "
                                                 f"{'is' if len(cur) == 1 else 'are'} back "
                                                 f"(~{plan[h.name][1] - self.e.clock.now():.1f}s)")
            await h.rt.drain()
        # Before the next batch's last failing check: is the current batch back? If not, undrain.
        while not all(c.state is HostState.DONE for c in cur):
            if self.e.clock.now() >= guard or (over.is_set() and not all(c.state is HostState.DONE for c in cur)) \
                    or self.e.cancelled():
                await self._undo_pre_drain(nxt, f"{', '.join(c.name for c in cur)} not back in time")
                return
            await self.e.clock.sleep(poll)

    async def _undo_pre_drain(self, nxt: list[HostRun], why: str) -> None:
        """Undrain hosts drained early (before the LB took them out, by the guard's timing) and
        make sure the LB still sends them traffic."""
        for h in nxt:
            if not h.pre_drained:
                continue
            try:
                await h.rt.undrain()
                await self.e.enter(h, HostState.EARLY_UNDONE, f"early drain undone: {why}")
                seen = await self._wait_lb_in(h, Phase.PENDING)
                await self.e.log(h.name, f"undrained; still in the LB: {seen}")
            except Exception as exc:  # noqa: BLE001 - reported; its own cycle or status shows the rest
                await self.e.log(h.name, f"undoing the early drain: {type(exc).__name__}: {exc}", "warning")

    async def _cycle(self, h: HostRun) -> None:
        """Drain -> LB out -> stop -> run -> healthy -> LB in. Raises StepFailed or Cancelled."""
        h.started_at = h.started_at or self.e.wallclock()
        running = h.prev is not None and h.prev.state == "running"
        pre_drained = h.pre_drained
        if not pre_drained:
            await self.e.enter(h, HostState.DRAINING)
        if running:
            if not pre_drained:
                await self.e.call(Phase.DRAINING, h.rt.drain(), 30.0)
            await self.e.enter(h, HostState.WAITING_LB_OUT)
            why = await self._wait_lb_out(h, cancellable=True)
            await self.e.log(h.name, f"LB stopped sending traffic: {why}")
        else:
            await self.e.log(h.name, "no running container: nothing to drain")
        if self.e.cancelled():
            raise Cancelled()
        await self.e.enter(h, HostState.STOPPING)
        grace = float(self.e.deploy.stop_grace_seconds)
        await self.e.call(Phase.STOPPING, h.rt.stop(grace), grace + self.e.opt.step_timeout_extra)
        await self.e.enter(h, HostState.STARTING, self.e.plan.to_tag)
        await self.e.call(Phase.STARTING, h.rt.run(self.e.plan.image_ref, self.e.opt.env),
                         60.0 + self.e.opt.step_timeout_extra)
        await self.e.enter(h, HostState.WAITING_HEALTHY)
        why = await self._wait_healthy(h)
        await self.e.log(h.name, f"new container {why}")
        await self.e.enter(h, HostState.WAITING_LB_IN)
        why = await self._wait_lb_in(h, served_base=0)
        await self.e.log(h.name, f"LB sends traffic: {why}")
        await self.e.enter(h, HostState.DONE, self.e.plan.to_tag)

    async def _restore(self, h: HostRun, reached: HostState) -> None:
        """Put the previous version back and wait until the LB sends it traffic; `reached` is
        where the cycle stopped. Raises StepFailed."""
        await self.e.enter(h, HostState.RESTORING, h.prev_ref or "")
        grace = float(self.e.deploy.stop_grace_seconds)
        if not reached.old_stopped:
            if h.prev is not None and h.prev.state == "running":
                await self.e.call(Phase.RESTORING, h.rt.undrain(), 30.0)
                why = await self._wait_lb_in(h, Phase.RESTORING)
                await self.e.log(h.name, f"undrained; {why}")
            return
        if reached.new_started:
            st = await self.e.stats(h)
            if st is not None and (st.served > 0 or st.in_flight > 0):
                # The LB already sent the new one traffic: take it out properly before stopping.
                await self.e.call(Phase.RESTORING, h.rt.drain(), 30.0)
                try:
                    await self._wait_lb_out(h, cancellable=False)
                except StepFailed as exc:
                    raise StepFailed(Phase.RESTORING, f"new container would not leave the LB: {exc.seen}") from exc
        await self.e.call(Phase.RESTORING, h.rt.stop(grace), grace + self.e.opt.step_timeout_extra)
        if not h.prev_ref:
            await self.e.log(h.name, "no previous container to restore: host left without one", "warning")
            return
        await self.e.call(Phase.RESTORING, h.rt.run(h.prev_ref, self.e.opt.env), 60.0 + self.e.opt.step_timeout_extra)
        try:
            await self._wait_healthy(h)
        except StepFailed as exc:
            raise StepFailed(Phase.RESTORING, f"previous version not healthy: {exc.seen}") from exc
        why = await self._wait_lb_in(h, Phase.RESTORING, served_base=0)
        await self.e.log(h.name, f"previous version {h.prev.tag if h.prev else h.prev_ref} back: {why}")

    async def host(self, h: HostRun) -> HostResult:
        """Run one host to DONE or RESTORED. Returns (failure, cancelled, restore_error)."""
        failure: StepFailed | None = None
        cancelled = False
        try:
            await self._cycle(h)
            return None, False, None
        except StepFailed as exc:
            failure = exc
            reached = h.state
            await self.e.enter(h, HostState.FAILED, f"{exc.phase.value}: {exc.seen}")
            await self.e.log(h.name, f"failed at {exc.phase.value}: {exc.seen}", "error")
        except Cancelled:
            cancelled = True
            reached = h.state
            await self.e.log(h.name, "stop requested before the old container was stopped: restoring it", "warning")
        try:
            await self._restore(h, reached)
        except StepFailed as exc:
            await self.e.enter(h, HostState.RESTORE_FAILED, f"restore failed: {exc.seen}")
            await self.e.log(h.name, f"could not restore: {exc.seen}", "error")
            await self.e.journal_host(h, failure or StepFailed(Phase.RESTORING, "cancelled"), exc.seen)
            return failure, cancelled, exc.seen
        back = HostState.INTERRUPTED if cancelled and failure is None else HostState.RESTORED
        await self.e.enter(h, back, h.prev.tag if h.prev else "")
        return failure, cancelled, None

