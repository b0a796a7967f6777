"""The engine's state machine in virtual time (fake clock, fake hosts, fake LB with DO semantics)."""

from __future__ import annotations

import asyncio
import itertools
import threading

import pytest

from zdd_tui.config import DeployConfig
from zdd_tui.rollout.engine import Engine, EngineOptions
from zdd_tui.rollout.events import (
    HealthChanged,
    OutcomeStatus,
    Phase,
    PhaseChanged,
    Progress,
    RolloutFinished,
    RolloutPlanned,
)
from zdd_tui.rollout.interfaces import RuntimeFailure
from zdd_tui.rollout.journal import Journal, read_records, summarize, unfinished
from zdd_tui.rollout.listeners import Recorder
from zdd_tui.rollout.plan import HostFact, bound_lb_in, bound_lb_out, build_plan

from .fakes import FakeClock, FakeCloud, World, ref

NEW = "sha-bbbbbbb"
OLD = "sha-aaaaaaa"

HAPPY = [Phase.PULLING, Phase.PENDING, Phase.DRAINING, Phase.WAITING_LB_OUT, Phase.STOPPING, Phase.STARTING,
         Phase.WAITING_HEALTHY, Phase.WAITING_LB_IN, Phase.DONE]


def make(world: World, tag=NEW, batch_size=1, start_timeout=20, margin=2, **plan_kw):
    deploy = DeployConfig(batch_size=batch_size, start_timeout_seconds=start_timeout, margin_seconds=margin,
                          stop_grace_seconds=10, pull_timeout_seconds=60)
    facts = [HostFact(n, h.address, h.container.tag if h.container else None, settled=True)
             for n, h in world.hosts.items()]
    plan = build_plan(facts, tag, ref(tag), world.settings, deploy, **plan_kw)
    return plan, deploy


def engine(world, clock, plan, deploy, rec=None, cancel=None, cloud=None, **kw):
    return Engine(plan, world.hosts, cloud or FakeCloud(world), world.settings, deploy,
                  listeners=[rec] if rec else [], clock=clock, cancel=cancel,
                  journal=Journal(world.hosts, wallclock=clock.now), operator="tester@box", **kw)


def phases(rec: Recorder, host: str) -> list[Phase]:
    return [e.phase for e in rec.of(PhaseChanged) if e.host == host]


@pytest.fixture
def clock():
    return FakeClock()


async def test_happy_rollout_every_step_in_order_and_zero_failed(clock):
    world = World(clock)
    world.add_version(NEW)
    plan, deploy = make(world)
    rec = Recorder()
    out = await clock.run(engine(world, clock, plan, deploy, rec).run())
    assert out.status == OutcomeStatus.SUCCESS, out.message
    assert world.tags() == dict.fromkeys(world.hosts, NEW)
    assert out.fleet == world.tags()
    assert all(world.lb_state.values())
    assert world.failed == 0 and world.ok > 100
    for n in world.hosts:
        assert phases(rec, n) == HAPPY
        assert world.ops(n) == ["pull", "drain", "stop", f"run {NEW}"]
    # Events bracket the run; progress reaches 1.
    assert isinstance(rec.events[0], RolloutPlanned) and isinstance(rec.events[-1], RolloutFinished)
    assert rec.of(Progress)[-1].overall == pytest.approx(1.0)
    # DONE only once the LB really sends the new container traffic again (never on a stale view).
    done_at = {e.host: e.at for e in rec.of(PhaseChanged) if e.phase == Phase.DONE}
    for n in world.hosts:
        t_in = [t for t, h, op in world.log if h == n and op == "lb-in"]
        assert t_in and t_in[-1] <= done_at[n], (n, t_in, done_at[n])
    # One host at a time out of the LB: app-2 leaves it only after app-1 is back.
    assert world.max_out() == 1
    t_in_1 = [t for t, n, op in world.log if n == "app-1" and op == "lb-in"][-1]
    t_out_2 = next(t for t, n, op in world.log if n == "app-2" and op == "lb-out")
    assert t_out_2 > t_in_1


async def test_stop_only_after_lb_took_the_host_out_and_no_fixed_sleep(clock):
    world = World(clock)
    world.add_version(NEW)
    plan, deploy = make(world)
    out = await clock.run(engine(world, clock, plan, deploy).run())
    assert out.status == OutcomeStatus.SUCCESS
    s = world.settings
    for n in world.hosts:
        t_drain = next(t for t, h, op in world.log if h == n and op == "drain")
        t_out = next(t for t, h, op in world.log if h == n and op == "lb-out")
        t_stop = next(t for t, h, op in world.log if h == n and op == "stop")
        assert t_drain < t_out <= t_stop
        # Evidence-driven: stops within a poll or two of the LB's decision, not a sleep later.
        assert t_stop - t_out < 1.0
        assert t_out - t_drain <= s.unhealthy_threshold * s.interval
    # Whole rollout near the strategy's bound: per host (U+H-1) x interval + steps (+ checks' phase).
    per_host = (s.unhealthy_threshold + s.healthy_threshold) * s.interval + 3
    assert out.duration_seconds < 3 * per_host + world.pull_s + 1


async def test_lb_view_polled_at_most_once_per_interval(clock):
    world = World(clock)
    world.add_version(NEW)
    plan, deploy = make(world)
    rec = Recorder()
    await clock.run(engine(world, clock, plan, deploy, rec).run())
    calls = world.lb_health_calls
    assert len(calls) >= 3
    assert all(b - a >= world.settings.interval - 1e-9 for a, b in itertools.pairwise(calls))
    assert any(e.view == "lb" and e.healthy is False for e in rec.of(HealthChanged))
    assert any(e.view == "direct" and e.healthy is True for e in rec.of(HealthChanged))


async def test_lb_view_broken_counters_still_decide(clock):
    world = World(clock)
    world.add_version(NEW)
    plan, deploy = make(world)
    rec = Recorder()
    out = await clock.run(engine(world, clock, plan, deploy, rec, cloud=FakeCloud(world, broken=True)).run())
    assert out.status == OutcomeStatus.SUCCESS and world.failed == 0
    assert sum("LB health view unavailable" in e.line for e in rec.of_kind("log")) == 1


@pytest.mark.parametrize("behaviour,step", [("unhealthy", Phase.WAITING_HEALTHY), ("crash", Phase.WAITING_HEALTHY)])
async def test_bad_version_halts_at_first_host_and_restores_it(clock, behaviour, step):
    world = World(clock)
    world.add_version(NEW, behaviour)
    plan, deploy = make(world, start_timeout=20)
    rec = Recorder()
    out = await clock.run(engine(world, clock, plan, deploy, rec).run())
    assert out.status == OutcomeStatus.HALTED and out.restored
    assert out.failed_host == "app-1" and out.failed_step == step
    assert world.tags() == dict.fromkeys(world.hosts, OLD)
    assert all(world.lb_state.values()), world.lb_state
    assert world.failed == 0
    assert world.ops("app-1") == ["pull", "drain", "stop", f"run {NEW}", "stop", f"run {OLD}"]
    for n in ("app-2", "app-3"):  # pulled (harmless), never drained or stopped
        assert world.ops(n) == ["pull"]
        assert phases(rec, n)[-1] == Phase.SKIPPED
    assert phases(rec, "app-1")[-3:] == [Phase.FAILED, Phase.RESTORING, Phase.RESTORED]
    assert "app-1" in out.message and OLD in out.message and "app-2" in out.message
    if behaviour == "crash":
        assert "exit code 3" in out.seen and "crashing on start" in out.seen
        # Noticed from the container state, well before the start timeout.
        t_run = next(t for t, n, op in world.log if n == "app-1" and op == f"run {NEW}")
        t_stop2 = [t for t, n, op in world.log if n == "app-1" and op == "stop"][1]
        assert t_stop2 - t_run < 3
    else:
        assert "not healthy after 20s" in out.seen


async def test_slow_start_within_timeout_succeeds(clock):
    world = World(clock)
    world.add_version(NEW, "slow", start_delay=8)
    plan, deploy = make(world, start_timeout=15)
    out = await clock.run(engine(world, clock, plan, deploy).run())
    assert out.status == OutcomeStatus.SUCCESS, out.message
    assert world.tags() == dict.fromkeys(world.hosts, NEW) and world.failed == 0


async def test_slow_start_beyond_timeout_halts_and_restores(clock):
    world = World(clock)
    world.add_version(NEW, "slow", start_delay=30)
    plan, deploy = make(world, start_timeout=15)
    out = await clock.run(engine(world, clock, plan, deploy).run())
    assert out.status == OutcomeStatus.HALTED and out.failed_step == Phase.WAITING_HEALTHY
    assert world.tags() == dict.fromkeys(world.hosts, OLD) and world.failed == 0 and all(world.lb_state.values())


async def test_missing_tag_refused_before_anything_stops(clock):
    world = World(clock)
    plan, deploy = make(world, tag="sha-nothere")
    out = await clock.run(engine(world, clock, plan, deploy).run())
    assert out.status == OutcomeStatus.REFUSED and out.failed_step == Phase.PULLING
    assert "sha-nothere not found" in out.message and "nothing was stopped" in out.message
    for n in world.hosts:
        assert world.ops(n) == ["pull"]
    assert world.tags() == dict.fromkeys(world.hosts, OLD)


async def test_lb_never_takes_host_out_times_out_at_its_bound_then_undrains(clock):
    world = World(clock)
    world.add_version(NEW)
    world.lb_frozen.add("app-1")  # the LB ignores app-1's failing checks
    plan, deploy = make(world, margin=2)
    # in_flight never drops: the counters say the LB is still sending
    world.hosts["app-1"].container.service.in_flight = 1
    rec = Recorder()
    out = await clock.run(engine(world, clock, plan, deploy, rec).run())
    assert out.status == OutcomeStatus.HALTED and out.failed_step == Phase.WAITING_LB_OUT
    assert "1 request(s) in flight" in out.seen
    t_drain = next(t for t, n, op in world.log if n == "app-1" and op == "drain")
    t_undrain = next(t for t, n, op in world.log if n == "app-1" and op == "undrain")
    bound = bound_lb_out(world.settings, 2)
    assert bound <= t_undrain - t_drain < bound + 1
    assert world.ops("app-1") == ["pull", "drain", "undrain"]  # never stopped
    assert world.tags()["app-1"] == OLD and world.failed == 0


async def test_new_version_never_admitted_by_lb_then_restore_also_fails_is_error(clock):
    world = World(clock)
    world.add_version(NEW)
    plan, deploy = make(world, margin=2)
    eng = engine(world, clock, plan, deploy)

    def freeze(t, task):
        # once app-1's old container is gone, its LB state sticks at "out"
        if world.hosts["app-1"].container is None and "app-1" not in world.lb_frozen:
            world.lb_frozen.add("app-1")
        return False

    # no traffic or passing checks reach the new container's counters through a frozen LB,
    # so also blind the checker: the fake LB still checks, so drop its source from stats.
    world.hosts["app-1"].stats = _blind(world.hosts["app-1"].stats)
    out = await clock.run(eng.run(), on_time=freeze)
    assert out.status == OutcomeStatus.ERROR and not out.restored
    assert out.failed_host == "app-1" and out.failed_step == Phase.WAITING_LB_IN
    assert "could NOT be restored" in out.message
    assert world.ops("app-2") == ["pull"] and world.ops("app-3") == ["pull"]


def _blind(stats_fn):
    import dataclasses

    async def stats():
        st = await stats_fn()
        return None if st is None else dataclasses.replace(st, health_checkers=())
    return stats


async def test_traffic_never_quiet_without_checkers_times_out_lb_out(clock):
    world = World(clock)
    world.add_version(NEW)
    plan, deploy = make(world, margin=2)
    world.hosts["app-1"].stats = _blind(world.hosts["app-1"].stats)
    world.lb_frozen.add("app-1")
    world.lb_state["app-1"] = True  # the LB keeps sending to the old one, but the counters are blind...
    out = await clock.run(engine(world, clock, plan, deploy).run())
    # ...and the traffic counter alone cannot prove "out" while requests keep arriving.
    assert out.status == OutcomeStatus.HALTED and out.failed_step == Phase.WAITING_LB_OUT
    assert "last public request" in out.seen
    assert world.failed == 0
    assert bound_lb_in(world.settings, 2) == 3 * 3 + 3 + 2


async def test_batches_of_two_run_together_and_keep_one_host(clock):
    world = World(clock, names=("a", "b", "c", "d"))
    world.add_version(NEW)
    plan, deploy = make(world, batch_size=5)
    assert plan.batch_size == 3  # never all of them
    plan, deploy = make(world, batch_size=2)
    assert [[h.name for h in b] for b in plan.batches] == [["a", "b"], ["c", "d"]]
    out = await clock.run(engine(world, clock, plan, deploy).run())
    assert out.status == OutcomeStatus.SUCCESS and world.failed == 0
    drains = {n: next(t for t, h, op in world.log if h == n and op == "drain") for n in world.hosts}
    assert drains["a"] == drains["b"] < drains["c"] == drains["d"]


async def test_refuses_to_take_hosts_out_when_no_other_is_in_the_lb(clock):
    world = World(clock)
    world.add_version(NEW)
    plan, deploy = make(world, margin=2)
    for n in ("app-2", "app-3"):  # the rest of the fleet is down
        world.hosts[n].container.service.draining = True
    out = await clock.run(engine(world, clock, plan, deploy).run())
    assert out.status == OutcomeStatus.HALTED and out.failed_step == Phase.PENDING
    assert "no other host healthy" in out.seen
    assert world.ops("app-1") == ["pull"]


async def test_first_deploy_onto_hosts_that_run_nothing_needs_no_host_in_the_lb(clock):
    # A fresh fleet (after setup): nothing runs, so nothing is in the LB and nothing can leave it.
    world = World(clock)
    world.add_version(NEW)
    for h in world.hosts.values():
        h.container = None
    plan, deploy = make(world)
    out = await clock.run(engine(world, clock, plan, deploy).run())
    assert out.status == OutcomeStatus.SUCCESS, out
    assert world.tags() == dict.fromkeys(world.hosts, NEW)
    assert all(world.lb_state.values())


async def test_cancel_while_waiting_lb_out_restores_and_stops(clock):
    world = World(clock)
    world.add_version(NEW)
    plan, deploy = make(world)
    cancel = asyncio.Event()
    rec = Recorder()
    eng = engine(world, clock, plan, deploy, rec, cancel=cancel)

    def on_time(t, task):
        if not cancel.is_set() and world.ops("app-1")[-1:] == ["drain"]:
            cancel.set()
        return False

    out = await clock.run(eng.run(), on_time=on_time)
    assert out.status == OutcomeStatus.INTERRUPTED
    assert world.ops("app-1") == ["pull", "drain", "undrain"]
    assert world.tags() == dict.fromkeys(world.hosts, OLD) and world.failed == 0
    assert all(world.lb_state.values())
    recs = summarize((await read_records(world.hosts))[0])
    assert recs[-1].status == "interrupted" and recs[-1].results["app-1"].outcome == "interrupted"


async def test_cancel_after_stop_finishes_that_host_then_stops(clock):
    world = World(clock)
    world.add_version(NEW)
    plan, deploy = make(world)
    cancel = threading.Event()  # a thread-safe event works too (the console may set it)
    eng = engine(world, clock, plan, deploy, cancel=cancel)

    def on_time(t, task):
        if not cancel.is_set() and "stop" in world.ops("app-1"):
            cancel.set()
        return False

    out = await clock.run(eng.run(), on_time=on_time)
    assert out.status == OutcomeStatus.INTERRUPTED
    assert world.tags() == {"app-1": NEW, "app-2": OLD, "app-3": OLD}
    assert world.ops("app-2") == ["pull"] and world.failed == 0
    assert "app-1 on " + NEW in out.message


async def test_killed_mid_rollout_leaves_an_unfinished_journal_and_resume_repairs(clock):
    world = World(clock)
    world.add_version(NEW)
    plan, deploy = make(world)
    rec = Recorder()
    eng = engine(world, clock, plan, deploy, rec)

    def kill_when_drained(t, task):
        if phases(rec, "app-2")[-1:] == [Phase.WAITING_LB_OUT]:
            task.cancel()  # the process dies: no restore, no end record
            return True
        return False

    await clock.run(eng.run(), on_time=kill_when_drained)
    records, unreadable, _ = await read_records(world.hosts)
    assert not unreadable
    [r] = unfinished(summarize(records))
    assert r.rollout_id == plan.rollout_id and r.to_tag == NEW
    assert r.results["app-1"].outcome == "done"
    assert r.host_state("app-2").startswith("stopped during draining") or "waiting-lb-out" in r.host_state("app-2")
    assert r.host_state("app-3") == "not touched"
    assert world.hosts["app-2"].container.service.draining

    # Resume: plan from what the hosts run now; the settled app-1 is left alone, app-2 goes first.
    facts = []
    for n, h in world.hosts.items():
        svc = h.container.service
        facts.append(HostFact(n, h.address, h.container.tag, settled=not svc.draining))
    plan2 = build_plan(facts, NEW, ref(NEW), world.settings, deploy, action="resume")
    assert plan2.unchanged == ("app-1",)
    assert [h.name for h in plan2.hosts] == ["app-2", "app-3"]
    world.failed = 0
    out = await clock.run(engine(world, clock, plan2, deploy).run())
    assert out.status == OutcomeStatus.SUCCESS and world.failed == 0
    assert world.tags() == dict.fromkeys(world.hosts, NEW)


async def test_journal_failure_does_not_stop_the_rollout(clock):
    world = World(clock)
    world.add_version(NEW)
    world.hosts["app-3"].fail_state_writes = True
    plan, deploy = make(world)
    eng = engine(world, clock, plan, deploy)
    out = await clock.run(eng.run())
    assert out.status == OutcomeStatus.SUCCESS
    assert eng.journal.errors and all(h == "app-3" for h, _ in eng.journal.errors)


async def test_nothing_to_do_when_all_settled_on_tag(clock):
    world = World(clock)
    plan, deploy = make(world, tag=OLD)
    assert plan.hosts == () and len(plan.unchanged) == 3
    out = await clock.run(engine(world, clock, plan, deploy).run())
    assert out.status == OutcomeStatus.SUCCESS and "nothing to do" in out.message
    assert all(world.ops(n) == [] for n in world.hosts)


async def test_single_host_fleet_is_allowed_with_a_note(clock):
    world = World(clock, names=("solo",))
    world.add_version(NEW)
    plan, deploy = make(world)
    assert plan.batch_size == 1 and any("single host" in n for n in plan.notes)
    out = await clock.run(engine(world, clock, plan, deploy, options=EngineOptions()).run())
    assert out.status == OutcomeStatus.SUCCESS
    assert world.failed > 0  # downtime is unavoidable with one host: the model must see it


async def test_overlap_drains_next_host_early_but_never_two_out_and_is_faster(clock):
    world = World(clock)
    world.add_version(NEW)
    plan, deploy = make(world)
    rec = Recorder()
    out = await clock.run(engine(world, clock, plan, deploy, rec).run())
    assert out.status == OutcomeStatus.SUCCESS and world.failed == 0 and world.max_out() == 1
    early = [e for e in rec.of(PhaseChanged) if e.phase == Phase.DRAINING and e.detail.startswith("early")]
    assert {e.host for e in early} == {"app-2", "app-3"}
    for n in ("app-2", "app-3"):
        prev = {"app-2": "app-1", "app-3": "app-2"}[n]
        t_in_prev = [t for t, h, op in world.log if h == prev and op == "lb-in"][-1]
        t_drain = next(t for t, h, op in world.log if h == n and op == "drain")
        t_out = next(t for t, h, op in world.log if h == n and op == "lb-out")
        assert t_drain < t_in_prev < t_out <= t_in_prev + world.settings.interval

    clock2 = FakeClock()
    world2 = World(clock2)
    world2.add_version(NEW)
    plan2, deploy2 = make(world2)
    out2 = await clock2.run(engine(world2, clock2, plan2, deploy2, options=EngineOptions(overlap=False)).run())
    assert out2.status == OutcomeStatus.SUCCESS and world2.failed == 0 and world2.max_out() == 1
    # (unhealthy - 1) x interval saved per later batch
    saved = out2.duration_seconds - out.duration_seconds
    assert saved >= 2 * (world.settings.unhealthy_threshold - 1) * world.settings.interval - 1


async def test_overlap_guard_undrains_next_host_when_current_is_late(clock):
    world = World(clock)
    world.add_version(NEW)
    plan, deploy = make(world, margin=2)
    rec = Recorder()
    eng = engine(world, clock, plan, deploy, rec)
    state = {"blocked": None}

    def block_app1_last_check(t, task):
        # once app-2 is drained early, the LB skips app-1's checks for two intervals (late checks)
        svc = world.hosts["app-2"].container.service if world.hosts["app-2"].container else None
        if state["blocked"] is None and svc is not None and svc.draining:
            world.skip_checks.add("app-1")
            state["blocked"] = t
        elif state["blocked"] is not None and t > state["blocked"] + 2 * world.settings.interval:
            world.skip_checks.discard("app-1")
        return False

    out = await clock.run(eng.run(), on_time=block_app1_last_check)
    assert out.status == OutcomeStatus.SUCCESS, out.message
    assert world.failed == 0 and world.max_out() == 1
    assert "undrain" in world.ops("app-2")  # the guard undid the early drain
    assert any(e.host == "app-2" and e.phase == Phase.PENDING and "early drain undone" in e.detail
               for e in rec.of(PhaseChanged))
    assert world.tags() == dict.fromkeys(world.hosts, NEW)


async def test_cancel_with_next_host_drained_early_undrains_it(clock):
    world = World(clock)
    world.add_version(NEW)
    plan, deploy = make(world)
    cancel = asyncio.Event()
    rec = Recorder()
    eng = engine(world, clock, plan, deploy, rec, cancel=cancel)

    def on_time(t, task):
        if not cancel.is_set() and Phase.DONE in phases(rec, "app-1"):
            cancel.set()
        return False

    out = await clock.run(eng.run(), on_time=on_time)
    assert out.status == OutcomeStatus.INTERRUPTED
    assert world.ops("app-2") == ["pull", "drain", "undrain"]  # drained early, then undone
    assert "lb-out" not in [op for _, n, op in world.log if n == "app-2"]
    assert world.tags() == {"app-1": NEW, "app-2": OLD, "app-3": OLD}
    assert world.failed == 0 and all(world.lb_state.values())
    assert "never out of the LB: app-2" in out.message


async def test_host_drained_early_that_fails_its_cycle_is_reported_restored_not_skipped(clock):
    world = World(clock)
    world.add_version(NEW)
    plan, deploy = make(world)
    rec = Recorder()
    host = world.hosts["app-2"]
    run_old = host.run

    async def run(image_ref, env=None):
        if image_ref.endswith(NEW):
            raise RuntimeFailure("no space left on device")
        return await run_old(image_ref, env)

    host.run = run
    out = await clock.run(engine(world, clock, plan, deploy, rec).run())
    assert out.status == OutcomeStatus.HALTED and out.failed_host == "app-2"
    assert any(e.host == "app-2" and e.detail.startswith("early") for e in rec.of(PhaseChanged))
    assert phases(rec, "app-2")[-1] == Phase.RESTORED  # its early drain was part of its own cycle
    assert world.ops("app-2")[-1] == "run sha-aaaaaaa"  # no second undrain after the restore
    assert "drained early then undrained" not in out.message
    assert world.tags() == {"app-1": NEW, "app-2": OLD, "app-3": OLD}
