"""The "local-swap" strategy: a proxy on each host moves traffic from the old container to the new
one; the host never leaves the load balancer, so no wait depends on the LB's check cadence.

Per host: start the new version on the idle slot -> its own health on that slot (bounded by
start_timeout_seconds) -> switch the proxy -> wait until nothing is in flight to the old slot
(bounded by stop_grace_seconds) -> stop the old container and keep it (stopped) -> prune beyond
deploy.retain. The stop and the prune go on beside the next batch, and a failure in them only
warns: the new version already serves. A new container that never gets healthy is removed and the
proxy never switches: the host is as it was. A failure up to the switch points the proxy at the
old slot again.

A host with no proxy yet is adopted first (the plan says how): "fresh" (it runs nothing: proxy
and app at once), "lb-drain" (its app has the admin contract: one drain cycle out of the LB) or
"detach" (out of the LB through the cloud's API and back). A proxy that is installed but not
healthy refuses the whole rollout before anything changes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import cast

from zdd_tui.rollout.events import HealthChanged, Phase, SlotSwitched
from zdd_tui.rollout.interfaces import ContainerInfo, HostRuntime, ProxyStatus, SwapHost, other_slot
from zdd_tui.rollout.lbdrain import LbDrain
from zdd_tui.rollout.plan import LEAVING, bound_lb_in, bound_lb_out
from zdd_tui.rollout.strategy import (
    Cancelled,
    HostResult,
    HostRun,
    HostState,
    Refused,
    StepFailed,
    Strategy,
    not_running,
)

SWITCH_TIMEOUT = 30.0  # the runtime's switch() gives up itself after ~10 s; this bounds the call


@dataclass
class _Swap:
    """How far one host got, so that a failure puts exactly that much back."""

    old: str | None = None  # the slot the proxy sent traffic to before
    new: str | None = None
    new_name: str | None = None  # the new container, once started
    switching: bool = False  # switch() was called (it may have half-happened)
    drained: bool = False  # adoption: the old single container was drained
    detached: bool = False  # adoption: taken out of the LB through the cloud's API
    old_stopped: bool = False  # adoption: the old single container was stopped (and removed)
    proxy_installed: bool = False  # adoption: the proxy now runs on the host
    old_running: bool = False  # the old slot's container ran when the cycle began
    # The slot containers as listed before the pull; under the deploy lock nothing else changes
    # them, so the start need not ask again (a round trip on each host's path).
    listed: list[ContainerInfo] | None = None
    # It served nothing before, so the LB has it out of rotation: done only once the LB's own
    # checks let it in (else a deploy could end with no host the LB sends traffic to).
    entering: bool = False


class LocalSwap(Strategy):
    name = "local-swap"

    def __init__(self, engine):
        super().__init__(engine)
        self._lbdrain = LbDrain(engine)  # its drain cycle and LB evidence, for adoption
        self._runs: dict[str, _Swap] = {}

    @staticmethod
    def _swap(h: HostRun) -> SwapHost:
        return cast(SwapHost, h.rt)  # checked in preflight

    # ---- before anything changes --------------------------------------------------------
    async def preflight(self) -> None:
        for h in self.e.hosts:
            if not isinstance(h.rt, SwapHost):
                raise Refused(f"{h.name}: this host runtime cannot run local-swap (no proxy support); nothing was "
                              "changed: deploy with --strategy lb-drain", h.name)

        async def status(h: HostRun) -> ProxyStatus | str:
            try:
                return await self._swap(h).proxy()
            except Exception as exc:  # noqa: BLE001 - reported as the refusal's reason
                return f"{type(exc).__name__}: {exc}"

        seen = await asyncio.gather(*(status(h) for h in self.e.hosts))
        for h, st in zip(self.e.hosts, seen, strict=True):
            if isinstance(st, str):
                raise Refused(f"cannot read the proxy's state on {h.name} ({st}); nothing was changed on any host: "
                              "check that the host is reachable and deploy again", h.name, st)
            h.proxy = st
            await self._report_proxy(h, st)
        for h in self.e.hosts:
            st = cast(ProxyStatus, h.proxy)
            if st.installed and not (st.running and st.healthy):
                what = "not running" if not st.running else "not healthy"
                raise Refused(
                    f"the proxy on {h.name} is installed but {what}{f' ({st.detail})' if st.detail else ''}; "
                    "nothing was changed on any host: start it again on the host (its container restarts "
                    "with docker start, or `zdd-tui setup` bootstraps the host again), then deploy again",
                    h.name, st.detail or what)
            if not st.installed and h.adopt is None:
                raise Refused(f"{h.name} has no proxy and the plan does not adopt it (the fleet changed since the "
                              "plan); nothing was changed: plan again", h.name)
        if any(h.adopt in LEAVING for h in self.e.hosts) and len(self.e.runtimes) < 2:
            h = next(h for h in self.e.hosts if h.adopt in LEAVING)
            raise Refused(f"{h.name} serves traffic without a proxy and is the only host: installing the proxy would "
                          "take it out of the LB with no other host serving; nothing was changed: add a droplet "
                          "first, or deploy once with --strategy lb-drain", h.name)

    async def inspect(self, h: HostRun) -> None:
        """The container the proxy sends traffic to (or, before adoption, the single container)."""
        try:
            if h.proxy is not None and h.proxy.installed:
                active = h.proxy.active_slot
                listed = await self._swap(h).slot_containers()
                self._runs.setdefault(h.name, _Swap()).listed = listed
                running = [c for c in listed if active is not None and c.slot == active and c.state == "running"]
                h.prev = running[0] if running else None
            else:
                h.prev = await h.rt.inspect()
        except Exception as exc:
            raise StepFailed(Phase.PULLING, f"cannot inspect the containers: {type(exc).__name__}: {exc}") from exc
        h.prev_ref = h.prev.image_ref if h.prev is not None else self.e.opt.fallback_prev.get(h.name)

    async def before_batch(self, batch: list[HostRun]) -> None:
        # Only an adoption leaves the LB; it waits until another host serves there.
        if any(h.adopt in LEAVING for h in batch):
            await self._lbdrain._wait_others_in_lb(batch)

    def halt_message(self, h: HostRun, f: StepFailed) -> str:
        prev = h.prev.tag if h.prev else "nothing"
        return f"halted: {h.name} failed at {f.phase.value} ({f.seen}); {h.name} serves {prev} as before"

    async def fleet_tag(self, rt: HostRuntime) -> str | None:
        if not isinstance(rt, SwapHost):
            return await super().fleet_tag(rt)
        st = await rt.proxy()
        if not st.installed:
            return await super().fleet_tag(rt)
        for c in await rt.slot_containers():
            if st.active_slot is not None and c.slot == st.active_slot and c.state == "running":
                return c.tag
        return None

    # ---- one host -----------------------------------------------------------------------
    async def host(self, h: HostRun) -> HostResult:
        h.started_at = h.started_at or self.e.wallclock()
        run = self._runs.setdefault(h.name, _Swap())
        if h.adopt is None:
            return await self._attempt(h, run, self._cycle(h, run))
        return await self._attempt(h, run, self._adopt(h, run))

    async def _attempt(self, h: HostRun, run: _Swap, work: Awaitable[None]) -> HostResult:
        """`work` to the end (DONE, or SOAKING for a canary host), or the host back as it was."""
        e = self.e
        failure: StepFailed | None = None
        cancelled = False
        try:
            await work
            if h.state not in (HostState.SOAKING, HostState.STOPPING_OLD):  # those finish later
                await e.enter(h, HostState.DONE, e.plan.to_tag)
            return None, False, None
        except StepFailed as exc:
            failure = exc
            await e.enter(h, HostState.FAILED, f"{exc.phase.value}: {exc.seen}")
            await e.log(h.name, f"failed at {exc.phase.value}: {exc.seen}", "error")
        except Cancelled:
            cancelled = True
            await e.log(h.name, "stop requested before traffic moved: leaving the host as it was", "warning")
        return await self._back(h, run, failure, cancelled)

    async def _back(self, h: HostRun, run: _Swap, failure: StepFailed | None, cancelled: bool) -> HostResult:
        e = self.e
        try:
            await self._restore(h, run)
        except StepFailed as exc:
            await e.enter(h, HostState.RESTORE_FAILED, f"restore failed: {exc.seen}")
            await e.log(h.name, f"could not restore: {exc.seen}", "error")
            await e.journal_host(h, failure or StepFailed(Phase.RESTORING, "cancelled"), exc.seen)
            return failure, cancelled, exc.seen
        back = HostState.INTERRUPTED if cancelled and failure is None else HostState.RESTORED
        await e.enter(h, back, h.prev.tag if h.prev else "")
        return failure, cancelled, None

    # ---- the canary: after the soak ---------------------------------------------------------------
    async def finish_canary(self, h: HostRun) -> HostResult:
        run = self._runs[h.name]
        return await self._attempt(h, run, self._stop_old(h, run))

    async def revert_canary(self, h: HostRun, why: str, cancelled: bool) -> HostResult:
        """The old container still runs: the proxy goes back to it, the new one is removed."""
        await self.e.log(h.name, why, "warning")
        failure, cancelled, error = await self._back(h, self._runs[h.name], None, cancelled)
        if error is not None:
            return StepFailed(Phase.RESTORING, error), cancelled, error
        return failure, cancelled, error

    async def _cycle(self, h: HostRun, run: _Swap) -> None:
        """Start new on the idle slot -> healthy -> switch -> old drained -> old stopped -> prune.
        A canary host stops after the drain: its old container runs on through the soak."""
        e = self.e
        st = h.proxy
        run.old = st.active_slot if st is not None else None
        run.old_running = h.prev is not None and h.prev.state == "running" and h.prev.slot == run.old
        run.entering = run.old is None
        await self._start_and_switch(h, run)
        await self._back_in_lb(h, run, Phase.WAITING_LB_IN)
        if run.old is not None and run.old_running:
            await e.enter(h, HostState.DRAINING_OLD, f"slot {run.old}")
            await self._drain_old(h, run.old)
        if e.soaking(h):
            await e.enter(h, HostState.SOAKING, f"slot {run.new}; slot {run.old or 'none'} still runs "
                                                 f"{h.prev.tag if h.prev else 'nothing'}")
            return
        await self._stop_old(h, run)

    async def _stop_old(self, h: HostRun, run: _Swap) -> None:
        """The old container stops (kept for rollback) beside the next batch: traffic has left it,
        so how long its process takes to exit is nobody's wait."""
        e = self.e
        if run.old is not None and run.old_running:
            await e.enter(h, HostState.STOPPING_OLD, f"slot {run.old}, kept for rollback")
            e.behind(h, self._stopped(h, run.old))
        else:
            await self._prune(h)

    async def _stopped(self, h: HostRun, slot: str) -> None:
        """Stop the old slot, prune, DONE. A stop that fails is a warning, not a halt (as Kamal
        treats it): the new version serves, the old one serves nothing, and the next deploy stops a
        container left running on its idle slot before it starts there."""
        e, rt = self.e, self._swap(h)
        grace = float(e.deploy.stop_grace_seconds)
        try:
            await asyncio.wait_for(rt.stop_slot(slot, grace), grace + e.opt.step_timeout_extra)
        except Exception as exc:  # noqa: BLE001 - see the docstring
            why = "no result" if isinstance(exc, TimeoutError) else f"{type(exc).__name__}: {exc}"
            await e.log(h.name, f"could not stop the old container on slot {slot} ({why}); it serves no traffic "
                                "and the next deploy stops it first", "warning")
        await self._prune(h)
        await e.enter(h, HostState.DONE, e.plan.to_tag)

    async def _start_and_switch(self, h: HostRun, run: _Swap) -> None:
        e, rt = self.e, self._swap(h)
        run.new = other_slot(run.old)
        extra = e.opt.step_timeout_extra
        listed, run.listed = run.listed, None
        try:
            if listed is None:
                listed = await rt.slot_containers()
            leftover = [c for c in listed if c.slot == run.new and c.state == "running"]
        except Exception as exc:  # noqa: BLE001 - run_slot says so precisely if the slot is taken
            leftover = []
            await e.log(h.name, f"cannot list the slot containers: {type(exc).__name__}: {exc}", "warning")
        if leftover:
            # Left running by an earlier attempt; the proxy does not send it traffic.
            await e.log(h.name, f"slot {run.new} still runs {leftover[0].tag} (not serving): stopping it first")
            grace = float(e.deploy.stop_grace_seconds)
            await e.call(Phase.STARTING, rt.stop_slot(run.new, grace), grace + extra)
        await e.enter(h, HostState.STARTING, f"{e.plan.to_tag} on slot {run.new}")
        info = await e.call(Phase.STARTING, rt.run_slot(run.new, e.plan.image_ref, e.opt.env), 60.0 + extra)
        run.new_name = info.name
        await e.enter(h, HostState.CHECKING_HEALTH, f"slot {run.new}")
        why = await self._wait_slot_healthy(h, run.new, info.name)
        await e.log(h.name, f"new container on slot {run.new} {why}")
        if e.cancelled():
            raise Cancelled()  # nothing switched yet: the restore removes the new container
        await e.enter(h, HostState.SWITCHING, f"slot {run.old or 'none'} -> {run.new}")
        run.switching = True
        await e.call(Phase.SWITCHING, rt.switch(run.new), SWITCH_TIMEOUT)
        e.switched(h.name, run.new, e.plan.to_tag)
        await e.emit(SlotSwitched(host=h.name, slot=run.new, tag=e.plan.to_tag,
                                  from_tag=h.prev.tag if h.prev is not None else None))
        # switch() returned once the proxy's own API named the new slot: that is its state.
        await self._report_proxy(h, ProxyStatus(installed=True, running=True, healthy=True, active_slot=run.new))

    async def _wait_slot_healthy(self, h: HostRun, slot: str, name: str) -> str:
        e, rt = self.e, self._swap(h)
        bound = float(e.deploy.start_timeout_seconds)
        start = e.clock.now()
        deadline = start + bound
        seen = "no answer yet"
        next_inspect = start
        inspecting: asyncio.Task[str | None] | None = None
        try:
            while True:
                if inspecting is None and e.clock.now() >= next_inspect:
                    # A round trip; once a second is plenty to notice a crash. Beside the probes, not
                    # between them: the probe alone decides how soon the switch comes.
                    next_inspect = e.clock.now() + 1.0
                    inspecting = asyncio.ensure_future(self._gone(h, name))
                try:
                    probe = await rt.probe_slot(slot)
                    ok = probe.healthy
                    detail = f"{probe.status} {probe.detail}".strip() if probe.status else (probe.detail or "no answer")
                except Exception as exc:  # noqa: BLE001
                    ok, detail = False, f"{type(exc).__name__}: {exc}"
                await e.set_direct(h, ok, detail)
                if ok:
                    return f"healthy after {e.clock.now() - start:.1f}s"
                seen = detail
                if inspecting is not None and inspecting.done():
                    gone, inspecting = inspecting.result(), None
                    if gone:
                        tail = await e.tail(h)
                        raise StepFailed(Phase.CHECKING_HEALTH, gone + (f"; last output: {tail}" if tail else ""))
                if e.clock.now() >= deadline:
                    tail = await e.tail(h)
                    raise StepFailed(Phase.CHECKING_HEALTH, f"not healthy after {bound:g}s: last probe {seen}"
                                     + (f"; last output: {tail}" if tail else ""))
                await e.clock.sleep(e.opt.poll_seconds)
        finally:
            if inspecting is not None and not inspecting.done():
                inspecting.cancel()

    async def _gone(self, h: HostRun, name: str) -> str | None:
        """A description if the container `name` is not running (crashed, exited, restarting)."""
        try:
            info = await self._container(h, name)
        except Exception as exc:  # noqa: BLE001
            return f"cannot inspect the container: {type(exc).__name__}: {exc}"
        return not_running(info)

    async def _container(self, h: HostRun, name: str) -> ContainerInfo | None:
        return next((c for c in await self._swap(h).slot_containers() if c.name == name), None)

    async def _drain_old(self, h: HostRun, slot: str) -> None:
        """Until the proxy has nothing in flight to `slot`, bounded by stop_grace_seconds (then the
        stop's own grace still lets what is left finish)."""
        e, rt = self.e, self._swap(h)
        bound = float(e.deploy.stop_grace_seconds)
        start = e.clock.now()
        n: int | None = None
        while True:
            try:
                n = await rt.in_flight(slot)
            except Exception:  # noqa: BLE001 - unknown: wait out the bound
                n = None
            if n == 0:
                await e.log(h.name, f"nothing in flight to slot {slot} after {e.clock.now() - start:.1f}s")
                return
            if e.clock.now() - start >= bound:
                what = "an unknown number of" if n is None else str(n)
                await e.log(h.name, f"{what} request(s) still in flight to slot {slot} after {bound:g}s: stopping "
                                    "it anyway (SIGTERM gives them the stop grace)", "warning")
                return
            await e.clock.sleep(e.opt.poll_seconds)

    async def _prune(self, h: HostRun) -> None:
        e = self.e
        try:
            removed = await asyncio.wait_for(self._swap(h).prune(e.deploy.retain), 60.0 + e.opt.step_timeout_extra)
        except Exception as exc:  # noqa: BLE001 - housekeeping: the deploy itself succeeded
            await e.log(h.name, f"could not remove old containers: {type(exc).__name__}: {exc}", "warning")
            return
        if removed:
            await e.log(h.name, f"removed old containers beyond the newest {e.deploy.retain}: {', '.join(removed)}")

    async def _report_proxy(self, h: HostRun, st: ProxyStatus | None = None) -> None:
        if st is None:
            try:
                st = await self._swap(h).proxy()
            except Exception as exc:  # noqa: BLE001 - advisory
                st = ProxyStatus(installed=True, running=False, healthy=False, active_slot=None,
                                 detail=f"{type(exc).__name__}: {exc}")
        healthy = st.healthy if st.installed else None
        if st.healthy and st.active_slot:
            detail = f"active slot {st.active_slot}"
        else:
            detail = st.detail or ("not installed" if not st.installed else "")
        if healthy != h.proxy_view or st.healthy:
            h.proxy_view = healthy
            await self.e.emit(HealthChanged(host=h.name, view="proxy", healthy=healthy, detail=detail))

    # ---- adoption: a host with no proxy yet -----------------------------------------------
    async def _adopt(self, h: HostRun, run: _Swap) -> None:
        e, rt = self.e, self._swap(h)
        grace = float(e.deploy.stop_grace_seconds)
        extra = e.opt.step_timeout_extra
        serving = h.prev is not None and h.prev.state == "running"
        if h.adopt == "lb-drain" and serving:
            await e.enter(h, HostState.DRAINING, "adoption: leaving the LB once to get its proxy")
            run.drained = True
            await e.call(Phase.DRAINING, h.rt.drain(), 30.0)
            await e.enter(h, HostState.WAITING_LB_OUT)
            why = await self._lbdrain._wait_lb_out(h, cancellable=True)
            await e.log(h.name, f"LB stopped sending traffic: {why}")
        elif h.adopt == "detach" and serving:
            await e.enter(h, HostState.LEAVING_LB, "adoption: taken out of the LB through the cloud's API")
            run.detached = True
            await e.call(Phase.LEAVING_LB, e.cloud.lb_detach(h.name), 60.0)
            why = await self._wait_lb_view(h, want=False, phase=Phase.LEAVING_LB)
            await e.log(h.name, f"out of the LB: {why}")
        run.entering = not serving
        if e.cancelled():
            raise Cancelled()
        if h.prev is not None:
            await e.enter(h, HostState.STOPPING, "the container from before the proxy")
            run.old_stopped = True
            await e.call(Phase.STOPPING, h.rt.stop(grace), grace + extra)
        await e.enter(h, HostState.INSTALLING_PROXY, "proxy and app at once" if h.adopt == "fresh" else "")
        try:
            st = await e.call(Phase.INSTALLING_PROXY, rt.install_proxy(None), 120.0 + extra)
        except StepFailed:
            # It may have half-started (its process up, its checks not answered): ask the host.
            run.proxy_installed = await self._proxy_runs(h)
            raise
        run.proxy_installed = True
        h.proxy = st
        await self._report_proxy(h, st)
        run.old = None
        await self._start_and_switch(h, run)
        await self._back_in_lb(h, run, Phase.WAITING_LB_IN)
        await self._prune(h)

    async def _back_in_lb(self, h: HostRun, run: _Swap, phase: Phase) -> None:
        """After an adoption that left the LB, or on a host that served nothing before: back in
        (attach), and until the LB sends it traffic (the cloud's view, bounded; the proxy serves
        already, so a slow view only warns)."""
        e = self.e
        if not (run.detached or run.drained or run.entering):
            return
        if phase is Phase.WAITING_LB_IN:
            await e.enter(h, HostState.WAITING_LB_IN)
        if run.detached:
            await e.call(phase, e.cloud.lb_attach(h.name), 60.0)
            run.detached = False
        run.drained = run.entering = False
        try:
            why = await self._wait_lb_view(h, want=True, phase=phase)
            await e.log(h.name, f"LB sends traffic: {why}")
        except StepFailed as exc:
            await e.log(h.name, f"{exc.seen}; the proxy serves, continuing", "warning")

    async def _wait_lb_view(self, h: HostRun, *, want: bool, phase: Phase) -> str:
        """Until the LB's own (fresh) view says in (`want`) or out; out also ends once the bound
        has passed (the API already took the droplet out); in raises StepFailed at the bound."""
        e = self.e
        bound = (bound_lb_in if want else bound_lb_out)(e.settings, e.deploy.margin_seconds)
        start = e.clock.now()
        while True:
            fresh = await e.lb_fresh_view(start)
            # Out: not healthy, or no longer listed (a droplet untagged from a tag-based LB).
            if fresh is not None and (fresh.get(h.name) is True) == want:
                return f"the LB reports it {'healthy' if want else 'out'} after {e.clock.now() - start:.1f}s"
            if e.clock.now() - start >= bound:
                if not want:
                    return f"{bound:g}s passed since it was taken out"
                raise StepFailed(phase, f"the LB did not report it healthy within {bound:g}s")
            await e.clock.sleep(e.opt.poll_seconds)

    async def _proxy_runs(self, h: HostRun) -> bool:
        try:
            st = await self._swap(h).proxy()
        except Exception:  # noqa: BLE001 - unknown: the single container's way back is tried
            return False
        return st.installed and st.running

    # ---- putting a host back as it was ----------------------------------------------------
    async def _restore(self, h: HostRun, run: _Swap) -> None:
        e, rt = self.e, self._swap(h)
        grace = float(e.deploy.stop_grace_seconds)
        extra = e.opt.step_timeout_extra
        await e.enter(h, HostState.RESTORING, h.prev.tag if h.prev else "")
        try:
            if run.switching:
                await self._switch_back(h, run)
            if run.new_name is not None:
                info = await self._container(h, run.new_name)
                if info is not None and info.state in ("running", "restarting", "created") and run.new:
                    await e.call(Phase.RESTORING, rt.stop_slot(run.new, grace), grace + extra)
                await e.call(Phase.RESTORING, rt.remove_container(run.new_name), 60.0 + extra)
                await e.log(h.name, f"removed the new container {run.new_name}")
            if run.old_stopped and not run.switching:
                await self._previous_back(h, run)
            if run.drained and not run.old_stopped:
                await e.call(Phase.RESTORING, h.rt.undrain(), 30.0)
            await self._back_in_lb(h, run, Phase.RESTORING)
        except StepFailed as exc:
            raise StepFailed(Phase.RESTORING, exc.seen) from exc
        finally:
            if run.detached:  # never leave a droplet out of the LB
                try:
                    await e.cloud.lb_attach(h.name)
                    run.detached = False
                except Exception as exc:  # noqa: BLE001 - said, and the outcome is an error anyway
                    await e.log(h.name, f"could not put it back in the LB: {type(exc).__name__}: {exc}", "error")

    async def _switch_back(self, h: HostRun, run: _Swap) -> None:
        """After a switch (or a switch that failed half way): the proxy sends traffic to the old
        slot again, started again from its image if it no longer runs."""
        e, rt = self.e, self._swap(h)
        if run.old is None:
            if run.old_stopped:
                await self._previous_back(h, run)
            else:
                # Nothing served before: the proxy goes back to no upstream.
                await e.call(Phase.RESTORING, rt.install_proxy(None), 120.0 + e.opt.step_timeout_extra)
            return
        containers = await e.call(Phase.RESTORING, rt.slot_containers(), 30.0)
        if not any(c.slot == run.old and c.state == "running" for c in containers):
            if not h.prev_ref:
                raise StepFailed(Phase.RESTORING, f"slot {run.old} no longer runs and its image is unknown")
            info = await e.call(Phase.RESTORING, rt.run_slot(run.old, h.prev_ref, e.opt.env),
                                60.0 + e.opt.step_timeout_extra)
            await self._wait_slot_healthy(h, run.old, info.name)
        await e.call(Phase.RESTORING, rt.switch(run.old), SWITCH_TIMEOUT)
        e.switched(h.name, run.old, h.prev.tag if h.prev is not None else None)
        await e.log(h.name, f"the proxy sends traffic to slot {run.old} again")
        await self._report_proxy(h)

    async def _previous_back(self, h: HostRun, run: _Swap) -> None:
        """Adoption failed after the old single container stopped: its version comes back, behind
        the proxy when the proxy runs, else as before."""
        e = self.e
        extra = e.opt.step_timeout_extra
        if not h.prev_ref:
            await e.log(h.name, "no previous container to restore: host left without one", "warning")
            return
        if not run.proxy_installed:
            await e.call(Phase.RESTORING, h.rt.run(h.prev_ref, e.opt.env), 60.0 + extra)
            return
        rt = self._swap(h)
        slot = other_slot(run.new) if run.new else "a"
        info = await e.call(Phase.RESTORING, rt.run_slot(slot, h.prev_ref, e.opt.env), 60.0 + extra)
        await self._wait_slot_healthy(h, slot, info.name)
        await e.call(Phase.RESTORING, rt.switch(slot), SWITCH_TIMEOUT)
        e.switched(h.name, slot, h.prev.tag if h.prev is not None else None)
        await e.log(h.name, f"previous version back on slot {slot}, behind the proxy")
