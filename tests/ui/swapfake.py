"""local-swap for the console's tests: hosts with a proxy and slot containers (the `SwapHost`
reads the console and `status` make), and a source whose rollout is a fixed local-swap event
stream (what a local-swap engine emits), so the rollout view can be checked step by step.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from zdd_tui.events import Event, LogLine
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
    SlotSwitched,
)
from zdd_tui.rollout.interfaces import ContainerInfo, ProxyStatus

from .fake import FakeSource

OLD, NEW = "sha-b16b00b", "sha-c0ffee1"
BEFORE = "sha-0ddba11"
REF = "registry.digitalocean.com/zdd/app"
PORTS = {"a": 8081, "b": 8082}


def slot(slot: str, tag: str, state: str = "running", started: float = 0.0, stopped: float | None = None,
         app: str = "app") -> ContainerInfo:
    return ContainerInfo(name=f"{app}-{slot}-{tag}", image_ref=f"{REF}:{tag}", tag=tag, digest=None, state=state,
                         started_at=started, slot=slot, port=PORTS[slot], stopped_at=stopped)


class SwapSide:
    """What one host's runtime says of its proxy and slots; counts the calls."""

    def __init__(self, proxy: ProxyStatus, slots: list[ContainerInfo]):
        self.status = proxy
        self.slots = slots
        self.calls = {"proxy": 0, "slot_containers": 0}

    async def proxy(self) -> ProxyStatus:
        self.calls["proxy"] += 1
        return self.status

    async def slot_containers(self) -> list[ContainerInfo]:
        self.calls["slot_containers"] += 1
        return list(self.slots)


def healthy_proxy(active: str | None) -> ProxyStatus:
    return ProxyStatus(installed=True, running=True, healthy=True, active_slot=active)


def mixed_fleet() -> dict[str, SwapSide]:
    """app-1 serves NEW from slot b (OLD and BEFORE kept), app-2's proxy is down (its slot a
    still holds OLD), app-3 has no proxy yet (lb-drain: its single container)."""
    return {
        "app-1": SwapSide(healthy_proxy("b"), [
            slot("b", NEW, started=300.0),
            slot("a", OLD, state="exited", started=100.0, stopped=310.0),
            slot("a", BEFORE, state="exited", started=10.0, stopped=110.0),
        ]),
        "app-2": SwapSide(ProxyStatus(installed=True, running=False, healthy=False, active_slot="a",
                                      detail="container exited (137)"), [slot("a", OLD, started=100.0)]),
        "app-3": SwapSide(ProxyStatus(installed=False, running=False, healthy=False, active_slot=None), []),
    }


def give_swap(runtimes: dict[str, Any], sides: dict[str, SwapSide]) -> None:
    """Give the fake hosts' runtimes their local-swap side (as the real runtimes have it)."""
    for name, side in sides.items():
        rt = runtimes[name]
        rt.proxy = side.proxy
        rt.slot_containers = side.slot_containers


def swap_stream(plan: Plan) -> tuple[list[Event], int]:
    """A local-swap rollout of app-1 alone, then app-2 and app-3 together, from OLD on slot a to
    NEW on slot b: what the engine emits (phases, the new slot's health, the switch, the proxy);
    and how many events make the middle (app-1 done, app-2 draining its old slot, app-3
    checking the new one's health)."""
    events: list[Event] = [RolloutPlanned(plan, at=0.0)]
    t = 0.0

    def at(dt: float) -> float:
        nonlocal t
        t += dt
        return t

    names = [h.name for h in plan.hosts]
    for n in names:
        events.append(PhaseChanged(n, Phase.PULLING, plan.image_ref, at=at(0.1)))
    for i, n in enumerate(names):
        events.append(LogLine(n, f"{NEW} present on the host", at=at(0.1)))
        events.append(PhaseChanged(n, Phase.PENDING, "image pulled; waiting its turn", at=at(0.0)))
        events.append(Progress(n, 0.1, 0.1 * (i + 1) / len(names), at=at(0.0)))

    def cycle(n: str, upto: Phase | None = None) -> None:
        steps: list[Event] = [
            PhaseChanged(n, Phase.STARTING, f"{NEW} on slot b", at=at(0.5)),
            Progress(n, 0.3, 0.2, at=at(0.0)),
            PhaseChanged(n, Phase.CHECKING_HEALTH, "slot b", at=at(0.4)),
            HealthChanged(n, "direct", True, "200 on slot b", at=at(1.2)),
            Progress(n, 0.5, 0.3, at=at(0.0)),
            PhaseChanged(n, Phase.SWITCHING, "a -> b", at=at(0.1)),
            SlotSwitched(n, "b", NEW, OLD, at=at(0.2)),
            HealthChanged(n, "proxy", True, at=at(0.0)),
            PhaseChanged(n, Phase.DRAINING_OLD, "2 requests in flight to slot a", at=at(0.0)),
            Progress(n, 0.7, 0.5, at=at(0.0)),
            PhaseChanged(n, Phase.STOPPING_OLD, f"{OLD} on slot a", at=at(0.6)),
            Progress(n, 0.9, 0.6, at=at(0.0)),
            PhaseChanged(n, Phase.DONE, NEW, at=at(0.5)),
        ]
        for ev in steps:
            events.append(ev)
            if isinstance(ev, PhaseChanged) and ev.phase is upto:
                return

    cycle("app-1")
    # Batch 2: app-2 and app-3 side by side.
    for ev in (
        PhaseChanged("app-2", Phase.STARTING, f"{NEW} on slot b", at=at(0.3)),
        PhaseChanged("app-3", Phase.STARTING, f"{NEW} on slot b", at=at(0.0)),
        PhaseChanged("app-2", Phase.CHECKING_HEALTH, "slot b", at=at(0.4)),
        PhaseChanged("app-3", Phase.CHECKING_HEALTH, "slot b", at=at(0.0)),
        HealthChanged("app-2", "direct", True, "200 on slot b", at=at(1.0)),
        PhaseChanged("app-2", Phase.SWITCHING, "a -> b", at=at(0.1)),
        SlotSwitched("app-2", "b", NEW, OLD, at=at(0.2)),
        HealthChanged("app-2", "proxy", True, at=at(0.0)),
        PhaseChanged("app-2", Phase.DRAINING_OLD, "1 request in flight to slot a", at=at(0.0)),
        Progress("app-2", 0.7, 0.7, at=at(0.0)),
    ):
        events.append(ev)
    mid = len(events)
    for ev in (
        HealthChanged("app-3", "direct", True, "200 on slot b", at=at(0.3)),
        PhaseChanged("app-3", Phase.SWITCHING, "a -> b", at=at(0.1)),
        SlotSwitched("app-3", "b", NEW, OLD, at=at(0.2)),
        HealthChanged("app-3", "proxy", True, at=at(0.0)),
        PhaseChanged("app-2", Phase.STOPPING_OLD, f"{OLD} on slot a", at=at(0.3)),
        PhaseChanged("app-3", Phase.DRAINING_OLD, "", at=at(0.0)),
        PhaseChanged("app-3", Phase.STOPPING_OLD, f"{OLD} on slot a", at=at(0.3)),
        PhaseChanged("app-2", Phase.DONE, NEW, at=at(0.4)),
        PhaseChanged("app-3", Phase.DONE, NEW, at=at(0.1)),
        Progress("app-3", 1.0, 1.0, at=at(0.0)),
    ):
        events.append(ev)
    outcome = Outcome(OutcomeStatus.SUCCESS, f"{len(names)} host(s) now run {NEW}", NEW,
                      fleet=dict.fromkeys(names, NEW), duration_seconds=t, rollout_id=plan.rollout_id)
    events.append(RolloutFinished(outcome, at=at(0.0)))
    return events, mid


def swap_plan(action: str = "deploy", tag: str = NEW, adopt: tuple[tuple[str, str], ...] = ()) -> Plan:
    hosts = (PlannedHost("app-1", "203.0.113.11", OLD, 0), PlannedHost("app-2", "203.0.113.12", OLD, 1),
             PlannedHost("app-3", "203.0.113.13", OLD, 1))
    return Plan(rollout_id=f"fixed-{action}-{tag}", action=action, to_tag=tag, image_ref=f"{REF}:{tag}",
                hosts=hosts, batch_size=2, estimated_seconds=14.0,
                estimate_basis="per host: start and health ~3s, switch and drain ~2s",
                strategy="local-swap", adopt=adopt)


class SwapSource(FakeSource):
    """The fixed fake fleet, every host behind a proxy on slot a (OLD); a deploy plans local-swap
    and plays `swap_stream`, holding after `pause_after` events until `gate` is set."""

    def __init__(self, pause_after: int | None = None, adopt: tuple[tuple[str, str], ...] = (), **kw: Any):
        super().__init__(**kw)
        self.sides = {n: SwapSide(healthy_proxy("a"), [slot("a", OLD, started=100.0),
                                                       slot("b", BEFORE, state="exited", started=10.0, stopped=110.0)])
                      for n in self.world.hosts}
        give_swap(self.world.hosts, self.sides)
        self.swap_pause_after = pause_after
        self.adopt = adopt
        self.emitted: list[Event] = []
        self.stream_of: Callable[[Plan], list[Event]] = lambda plan: swap_stream(plan)[0]

    async def plan(self, action: str, tag: str) -> Plan:
        return swap_plan(action, tag, self.adopt)

    async def run(self, plan: Plan, listener: Callable[[Event], Any], cancel: asyncio.Event) -> Outcome:
        outcome: Outcome | None = None
        for ev in self.stream_of(plan):
            listener(ev)
            self.emitted.append(ev)
            if isinstance(ev, RolloutFinished):
                outcome = ev.outcome
            if self.swap_pause_after is not None and len(self.emitted) == self.swap_pause_after:
                self.paused.set()
                await self.gate.wait()
            await asyncio.sleep(0)
        assert outcome is not None
        return outcome
