"""The console's traffic: the sampler's history and rates from a runtime's counters (a proxy
restart included), the slices of a large fleet, the engine's readings during a rollout, and the
rollout graph's series against the events it was drawn from."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from zdd_tui.cloud.models import Droplet
from zdd_tui.project.traffic import TrafficHistory, TrafficSampler
from zdd_tui.rollout.events import CanaryUpdate, HostTraffic, SlotSwitched, TrafficSampled
from zdd_tui.traffic import Counters, ProxyCounters, Rates
from zdd_tui.ui.app import ZddApp
from zdd_tui.ui.graph import RolloutTraffic
from zdd_tui.ui.traffic import row_data

from .test_snapshots import filled
from .trafficfake import TrafficSource, canary_plan, traffic_stream
from .virtual_clock import VirtualClock

INF = float("inf")


def counters(requests: int, errors: int = 0, fast: int | None = None) -> Counters:
    """`fast` of the requests took at most 50 ms, the rest at most 1 s."""
    fast = requests if fast is None else fast
    return Counters(requests, errors, ((0.05, fast), (1.0, requests), (INF, requests)), requests * 0.03)


class ScriptedRuntime:
    """A host runtime whose proxy answers the given readings in turn (None: no answer; an
    exception is raised; "hang": never answers)."""

    def __init__(self, readings: list):
        self.readings = list(readings)
        self.calls = 0

    async def traffic(self) -> ProxyCounters | None:
        self.calls += 1
        r = self.readings.pop(0) if self.readings else None
        if r == "hang":
            await asyncio.sleep(3600)
        if isinstance(r, Exception):
            raise r
        return r


def droplet(i: int) -> Droplet:
    return Droplet(id=i, name=f"app-{i:03d}", status="active", region="nyc3", size="s-1vcpu-1gb",
                   public_ipv4=None, private_ipv4=None, tags=("zdd-app",))


def project_of(runtimes: dict[int, object], clock: VirtualClock) -> SimpleNamespace:
    return SimpleNamespace(clock=clock, runtime=lambda d: runtimes[d.id])


async def test_rates_between_readings_and_after_a_proxy_restart():
    clock = VirtualClock(100.0)
    rt = ScriptedRuntime([
        ProxyCounters({"a": counters(1000, 10)}, {"a": 2, "b": None}),
        ProxyCounters({"a": counters(1200, 14, fast=1150)}, {"a": 3, "b": None}),
        # The proxy restarted: its counters start from zero again.
        ProxyCounters({"a": counters(30, 1)}, {"a": 1}),
        # The switch: slot b serves now (its first requests), a's count stops growing.
        ProxyCounters({"a": counters(80, 1), "b": counters(40, 0)}, {"a": 0, "b": 4}),
    ])
    sampler = TrafficSampler(project_of({1: rt}, clock))
    for _ in range(4):
        await sampler.sample([droplet(1)])
        clock.t += 2.0
    points = sampler.history.points("app-001")
    # The first reading only starts the count.
    assert [p.at for p in points] == [102.0, 104.0, 106.0]
    first, restart, switch = (p.rates for p in points)
    assert (first.seconds, first.requests, first.errors, first.in_flight) == (2.0, 200, 4, 3)
    assert first.rps == 100.0 and first.error_share == 0.02
    assert first.p95 is not None and 0.05 < first.p95 <= 1.0  # 50 of the 200 took longer than 50 ms
    assert (restart.requests, restart.errors) == (30, 1)  # all that is known since the restart
    assert (switch.requests, switch.errors, switch.in_flight) == (50 + 40, 0, 4)


async def test_a_silent_proxy_is_a_gap_and_the_count_starts_again():
    clock = VirtualClock()
    rt = ScriptedRuntime([ProxyCounters({"a": counters(100)}), RuntimeError("ssh: connection reset"), "hang",
                          ProxyCounters({"a": counters(500)}), ProxyCounters({"a": counters(600)})])
    sampler = TrafficSampler(project_of({1: rt}, clock), timeout=0.05)
    for _ in range(5):
        await sampler.sample([droplet(1)])
        clock.t += 1.0
    got = [(p.at, p.rates.requests if p.rates else None) for p in sampler.history.points("app-001")]
    # No rate spans the gap: after it, one reading restarts the count.
    assert got == [(1.0, None), (2.0, None), (4.0, 100)]


async def test_no_proxy_side_is_no_data():
    clock = VirtualClock()
    sampler = TrafficSampler(project_of({1: SimpleNamespace()}, clock))  # a runtime without traffic()
    await sampler.sample([droplet(1)])
    assert sampler.history.latest("app-001").rates is None
    assert row_data(sampler.history, ["app-001"], 0.0)[0] is None  # the row says "no data"


async def test_a_large_fleet_is_read_a_slice_at_a_time():
    clock = VirtualClock()
    runtimes = {i: ScriptedRuntime([ProxyCounters({"a": counters(10 * k)}) for k in range(1, 10)])
                for i in range(1, 201)}
    fleet = [droplet(i) for i in range(1, 201)]
    sampler = TrafficSampler(project_of(runtimes, clock), per_sample=25)
    rounds = 200 // 25  # every host once
    for _ in range(rounds):
        before = sampler.reads
        await sampler.sample(fleet)
        assert sampler.reads - before == 25  # bounded, whatever the fleet's size
        clock.t += 1.0
    assert all(rt.calls == 1 for rt in runtimes.values())
    for _ in range(rounds):  # the second reading of each host gives its first rates
        await sampler.sample(fleet)
        clock.t += 1.0
    assert all(rt.calls == 2 for rt in runtimes.values())
    assert {len(sampler.history.points(d.name)) for d in fleet} == {1}
    # Each rate covers the host's own time between its two readings (8 slices of 1 s).
    assert {sampler.history.latest(d.name).rates.seconds for d in fleet} == {8.0}


def test_the_engines_readings_go_into_the_same_history_and_restart_the_count():
    clock = VirtualClock(10.0)
    sampler = TrafficSampler(project_of({}, clock))
    sampler.take("app-1", 10.0, ProxyCounters({"a": counters(100)}))
    sampler.record(TrafficSampled((HostTraffic("app-1", Rates(1.0, 50, 2)), HostTraffic("app-2", None)), at=11.0))
    assert [p.rates for p in sampler.history.points("app-1")] == [Rates(1.0, 50, 2)]
    assert sampler.history.latest("app-2").rates is None
    # The console's own next reading does not span the rollout: it starts the count again.
    assert sampler.take("app-1", 30.0, ProxyCounters({"a": counters(5000)})) is None
    assert sampler.take("app-1", 31.0, ProxyCounters({"a": counters(5040)})).requests == 40


def test_history_is_bounded_and_its_steps_add_up_to_the_readings():
    h = TrafficHistory(keep_seconds=60.0)
    for t in range(1, 200):
        h.add("app-1", float(t), Rates(1.0, 10 + t % 3, 1 if t % 50 == 0 else 0))
    points = h.points("app-1")
    assert points[0].at >= 199 - 60  # older readings are dropped
    req, err = h.series(["app-1"], 199.0, buckets=12)
    width = 60.0 / 12
    kept = [p.rates for p in points if p.at > 199 - 60]
    assert sum(req) * width == pytest.approx(sum(r.requests for r in kept), abs=13)  # the one straddling the start
    assert sum(err) * width == pytest.approx(sum(r.errors for r in kept))
    # A reading spanning 10 s (a slice of a large fleet) is spread over the steps it covers.
    h2 = TrafficHistory(keep_seconds=60.0)
    h2.add("app-1", 60.0, Rates(10.0, 100, 0))
    req2, _ = h2.series(["app-1"], 60.0, buckets=12)
    assert req2[-2:] == [10.0, 10.0] and sum(req2[:-2]) == 0


def test_the_rollout_graph_adds_up_the_events():
    events = traffic_stream(canary_plan(), bad=True)
    model = RolloutTraffic(start=0.0)
    for ev in events:
        model.add(ev)
    sampled = [ev for ev in events if isinstance(ev, TrafficSampled)]
    assert model.times == [ev.at for ev in sampled]
    assert model.rps == [sum(h.rates.rps for h in ev.hosts if h.rates) for ev in sampled]
    assert model.failed == [sum(h.rates.errors / h.rates.seconds for h in ev.hosts if h.rates) for ev in sampled]
    assert model.requests == sum(h.rates.requests for ev in sampled for h in ev.hosts if h.rates)
    assert model.errors == sum(h.rates.errors for ev in sampled for h in ev.hosts if h.rates) > 0
    assert model.switches == [(ev.at, ev.host) for ev in events if isinstance(ev, SlotSwitched)]


async def test_the_rollout_view_draws_the_engines_traffic_and_feeds_the_dashboard():
    src = TrafficSource(bad=True)
    app = ZddApp(src, poll="once")
    async with app.run_test(size=(120, 36)) as pilot:
        await filled(pilot)
        await pilot.press("d")
        while pilot.app.screen.__class__.__name__ != "ConfirmScreen":
            await pilot.pause(0.05)
        await pilot.press("y")
        while getattr(pilot.app.screen, "outcome", None) is None:
            await pilot.pause(0.05)
        screen = pilot.app.screen
        sampled = [ev for ev in src.emitted if isinstance(ev, TrafficSampled)]
        assert screen.traffic.rps == [sum(h.rates.rps for h in ev.hosts if h.rates) for ev in sampled]
        assert screen.traffic.errors == sum(h.rates.errors for ev in sampled for h in ev.hosts if h.rates)
        assert len(screen.traffic.switches) == 2  # app-1 to the new version, and back
        verdict = [ev.report for ev in src.emitted if isinstance(ev, CanaryUpdate)][-1]
        assert screen.canary == verdict and verdict.state.value == "failed"
        # The same readings are the dashboard's history (after the console's own, before the rollout).
        history = src.sampler.history
        for host in ("app-1", "app-2", "app-3"):
            assert [p.rates for p in history.points(host) if p.at >= sampled[0].at] == [
                h.rates for ev in sampled for h in ev.hosts if h.host == host]


async def test_no_reading_of_its_own_during_its_own_rollout():
    src = TrafficSource()
    reads: list[str] = []

    async def traffic() -> ProxyCounters:
        reads.append("read")
        return ProxyCounters({"a": counters(100)})

    for h in src.world.hosts.values():
        h.traffic = traffic
    src._droplets = await src.droplets()
    await src.traffic()
    assert len(reads) == 3
    src._running_id = "fixed-deploy"  # what run() sets while the engine reads the proxies
    await src.traffic()
    assert len(reads) == 3
    await src.close()
