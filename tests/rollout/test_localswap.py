"""The local-swap strategy in virtual time: the order of the per-host cycle, batches, a new version
that never gets healthy, a switch that fails, the drain of the old slot, a proxy that is not
healthy, adoption of hosts with no proxy (fresh, lb-drain, detach), and the strategy override.
The LB checks and the traffic go through each host's proxy (swapfakes.py), so `world.failed`
counts every request that met a host that could not answer."""

from __future__ import annotations

import pytest

from zdd_tui.config import CanaryConfig, DeployConfig
from zdd_tui.events import LogLine
from zdd_tui.rollout.engine import Engine
from zdd_tui.rollout.events import (
    HealthChanged,
    OutcomeStatus,
    Phase,
    PhaseChanged,
    SlotSwitched,
)
from zdd_tui.rollout.journal import Journal, read_records
from zdd_tui.rollout.listeners import Recorder
from zdd_tui.rollout.plan import HostFact, build_plan

from .fakes import FakeClock, fake_project
from .swapfakes import FakeSwapCloud, swap_world

NEW = "sha-bbbbbbb"
OLD = "sha-aaaaaaa"
REPO = "registry.test/reg/app"

SWAP = [Phase.PULLING, Phase.PENDING, Phase.STARTING, Phase.CHECKING_HEALTH, Phase.SWITCHING,
        Phase.DRAINING_OLD, Phase.STOPPING_OLD, Phase.DONE]


@pytest.fixture
def clock():
    return FakeClock()


def facts_of(world) -> list[HostFact]:
    out = []
    for n, h in world.hosts.items():
        c = h.container
        tag = c.tag if c is not None and c.state == "running" else None
        out.append(HostFact(n, h.address, tag, settled=h.installed and tag is not None, proxy=h.installed,
                            admin=h.admin and tag is not None))
    return out


def make(world, tag=NEW, batch_size=2, start_timeout=20, stop_grace=10, **kw):
    deploy = DeployConfig(batch_size=batch_size, start_timeout_seconds=start_timeout, margin_seconds=2,
                          stop_grace_seconds=stop_grace, pull_timeout_seconds=60, retain=2,
                          canary=CanaryConfig(enabled=False))  # the canary's own tests: test_canary.py
    plan = build_plan(facts_of(world), tag, f"{REPO}:{tag}", world.settings, deploy, strategy="local-swap", **kw)
    return plan, deploy


def engine(world, clock, plan, deploy, rec):
    return Engine(plan, world.hosts, FakeSwapCloud(world), world.settings, deploy, listeners=[rec], clock=clock,
                  journal=Journal(world.hosts, wallclock=clock.now), operator="tester@box")


def phases(rec: Recorder, host: str) -> list[Phase]:
    return [e.phase for e in rec.of(PhaseChanged) if e.host == host]


def when(world, host: str, op: str) -> float:
    return next(t for t, n, o in world.log if n == host and o == op)


async def test_happy_path_order_per_host_first_host_alone_and_zero_failed(clock):
    world = swap_world(clock, interval=10.0, unhealthy=3, healthy=5)  # DO's defaults: they must not matter
    world.add_version(NEW)
    plan, deploy = make(world)
    assert plan.strategy == "local-swap" and plan.adopt == ()
    assert [[h.name for h in b] for b in plan.batches] == [["app-1"], ["app-2", "app-3"]]
    rec = Recorder()
    out = await clock.run(engine(world, clock, plan, deploy, rec).run())
    assert out.status == OutcomeStatus.SUCCESS, out.message
    assert world.tags() == dict.fromkeys(world.hosts, NEW) == out.fleet
    assert world.failed == 0 and world.ok > 20
    assert all(world.lb_state.values()) and world.max_out() == 0  # no host ever left the LB
    for n, h in world.hosts.items():
        assert phases(rec, n) == SWAP
        assert world.ops(n) == ["pull", f"run_slot b {NEW}", "switch b", "in_flight a", "stop_slot a", "prune"]
        assert h.active == "b"
        assert [(s.slot, s.c.tag, s.c.state) for s in h.slots] == [("a", OLD, "exited"), ("b", NEW, "running")]
    # Health of the new slot before the switch; the switch announced with what it moved from.
    switched = rec.of(SlotSwitched)
    assert [(e.host, e.slot, e.tag, e.from_tag) for e in switched] == [(n, "b", NEW, OLD) for n in world.hosts]
    order = {id(e): i for i, e in enumerate(rec.events)}
    checked = {e.host: order[id(e)] for e in rec.of(PhaseChanged) if e.phase == Phase.CHECKING_HEALTH}
    assert all(checked[e.host] < order[id(e)] for e in switched)
    assert any(e.view == "proxy" and e.healthy for e in rec.of(HealthChanged))
    # The first host alone, the others together after it: once its traffic moved and its old slot
    # drained; its old container stops beside them, serving nothing.
    assert when(world, "app-1", "in_flight a") <= when(world, "app-2", f"run_slot b {NEW}") \
        < when(world, "app-1", "prune")
    assert when(world, "app-2", f"run_slot b {NEW}") == when(world, "app-3", f"run_slot b {NEW}")
    # Independent of the LB's cadence: well under one 10 s check interval per batch.
    assert out.duration_seconds < 10
    starts = [r for r in (await read_records(world.hosts)).records if r["type"] == "start"]
    assert starts and starts[0]["strategy"] == "local-swap"


@pytest.mark.parametrize("behaviour, seen", [("unhealthy", "cache not warm"), ("crash", "DATABASE_URL")])
async def test_a_new_version_that_never_gets_healthy_is_removed_never_switched_and_halts(clock, behaviour, seen):
    world = swap_world(clock)
    world.add_version(NEW, behaviour)
    plan, deploy = make(world, start_timeout=8)
    rec = Recorder()
    out = await clock.run(engine(world, clock, plan, deploy, rec).run())
    assert out.status == OutcomeStatus.HALTED and out.failed_host == "app-1"
    assert out.failed_step == Phase.CHECKING_HEALTH
    assert seen in out.seen  # the container's last output says why
    h = world.hosts["app-1"]
    assert h.switch_calls == 0 and h.active == "a"
    # Stopped first (a crashed one is restarting), then removed.
    assert world.ops("app-1") == ["pull", f"run_slot b {NEW}", "stop_slot b", f"remove app-b-{NEW}"]
    assert [s.slot for s in h.slots] == ["a"]
    for n in ("app-2", "app-3"):
        assert world.ops(n) == ["pull"] and phases(rec, n)[-1] == Phase.SKIPPED
    assert world.tags() == dict.fromkeys(world.hosts, OLD) and world.failed == 0
    assert rec.of(SlotSwitched) == []
    if behaviour == "crash":  # seen at the first inspection, not at the timeout
        assert out.duration_seconds < 8


async def test_a_switch_that_fails_points_the_proxy_back_at_the_old_slot(clock):
    world = swap_world(clock)
    world.add_version(NEW)
    world.hosts["app-1"].fail_switch = True
    plan, deploy = make(world)
    rec = Recorder()
    out = await clock.run(engine(world, clock, plan, deploy, rec).run())
    assert out.status == OutcomeStatus.HALTED and out.failed_step == Phase.SWITCHING
    assert "still reports slot a" in out.seen
    assert world.ops("app-1") == ["pull", f"run_slot b {NEW}", "switch b", "switch a", "stop_slot b",
                                  f"remove app-b-{NEW}"]
    assert world.hosts["app-1"].active == "a" and world.tags()["app-1"] == OLD
    assert phases(rec, "app-1")[-1] == Phase.RESTORED
    assert world.ops("app-2") == ["pull"] and world.failed == 0


async def test_the_old_slot_is_stopped_only_once_nothing_is_in_flight(clock):
    world = swap_world(clock, names=("app-1", "app-2"))
    world.add_version(NEW)
    h = world.hosts["app-1"]
    h.inflight["a"] = 3  # long requests still on the old slot when traffic moves
    clock.call_at(7.0, lambda: h.inflight.update(a=0))
    plan, deploy = make(world)
    out = await clock.run(engine(world, clock, plan, deploy, Recorder()).run())
    assert out.status == OutcomeStatus.SUCCESS, out.message
    assert when(world, "app-1", "switch b") < 7.0 <= when(world, "app-1", "stop_slot a")
    assert world.failed == 0


async def test_in_flight_that_never_ends_waits_out_stop_grace_then_warns(clock):
    world = swap_world(clock, names=("app-1", "app-2"))
    world.add_version(NEW)
    world.hosts["app-1"].inflight["a"] = 1
    plan, deploy = make(world, stop_grace=4)
    rec = Recorder()
    out = await clock.run(engine(world, clock, plan, deploy, rec).run())
    assert out.status == OutcomeStatus.SUCCESS, out.message
    waited = when(world, "app-1", "stop_slot a") - when(world, "app-1", "switch b")
    assert 4.0 <= waited < 5.0
    assert any("still in flight to slot a" in e.line and e.level == "warning" for e in rec.of(LogLine))


async def test_a_proxy_that_is_not_healthy_refuses_before_anything_changes(clock):
    world = swap_world(clock)
    world.add_version(NEW)
    world.hosts["app-3"].healthy = False
    plan, deploy = make(world)
    rec = Recorder()
    out = await clock.run(engine(world, clock, plan, deploy, rec).run())
    assert out.status == OutcomeStatus.REFUSED and out.failed_host == "app-3"
    assert "proxy on app-3 is installed but not healthy" in out.message and "start it again" in out.message
    for n in world.hosts:
        assert world.ops(n) == []  # not even a pull
    assert world.tags() == dict.fromkeys(world.hosts, OLD)
    assert any(e.view == "proxy" and e.healthy is False and e.host == "app-3" for e in rec.of(HealthChanged))


# ---- adoption ------------------------------------------------------------------------------------

def test_plans_of_adoption_say_how_and_leaving_hosts_go_one_at_a_time(clock):
    world = swap_world(clock, names=("app-1", "app-2", "app-3", "app-4"), proxies=False)
    world.add_version(NEW)
    world.hosts["app-2"].admin = False
    world.hosts["app-4"].container = None  # a new droplet: runs nothing
    plan, _ = make(world, batch_size=3)
    assert dict(plan.adopt) == {"app-1": "lb-drain", "app-2": "detach", "app-3": "lb-drain", "app-4": "fresh"}
    assert [[h.name for h in b] for b in plan.batches] == [["app-1"], ["app-2"], ["app-3"], ["app-4"]]
    text = plan.text()
    assert "strategy: local-swap" in text
    assert "adopt app-4: runs nothing: proxy and app at once" in text
    assert "adopt app-2: no proxy yet: leaves the LB once (taken out through the cloud's API)" in text
    assert "adoption(s) out of the LB" in plan.estimate_basis


async def test_adoption_fresh_host_gets_proxy_and_app_at_once(clock):
    world = swap_world(clock)
    world.add_version(NEW)
    fresh = world.hosts["app-3"]
    fresh.installed, fresh.active, fresh.slots = False, None, []
    world.lb_state["app-3"] = False  # it served nothing: out of the LB's rotation
    world.log.append((clock.now(), "app-3", "lb-out"))
    plan, deploy = make(world)
    assert dict(plan.adopt) == {"app-3": "fresh"}
    rec = Recorder()
    out = await clock.run(engine(world, clock, plan, deploy, rec).run())
    assert out.status == OutcomeStatus.SUCCESS, out.message
    assert world.ops("app-3") == ["pull", "install_proxy", f"run_slot a {NEW}", "switch a", "prune"]
    assert fresh.installed and fresh.active == "a" and world.tags() == dict.fromkeys(world.hosts, NEW)
    # Done only once the LB's own checks let it in: a deploy does not end with it out of rotation.
    assert Phase.WAITING_LB_IN in phases(rec, "app-3")
    assert world.lb_state["app-3"] is True


async def test_adoption_by_a_drain_cycle_one_host_out_at_a_time(clock):
    world = swap_world(clock, proxies=False)
    world.add_version(NEW)
    plan, deploy = make(world)
    assert dict(plan.adopt) == dict.fromkeys(world.hosts, "lb-drain")
    rec = Recorder()
    out = await clock.run(engine(world, clock, plan, deploy, rec).run())
    assert out.status == OutcomeStatus.SUCCESS, out.message
    for n, h in world.hosts.items():
        assert world.ops(n) == ["pull", "drain", "stop", "install_proxy", f"run_slot a {NEW}", "switch a", "prune"]
        assert h.installed and h.active == "a"
        assert Phase.WAITING_LB_OUT in phases(rec, n) and Phase.INSTALLING_PROXY in phases(rec, n)
    assert world.tags() == dict.fromkeys(world.hosts, NEW) and all(world.lb_state.values())
    assert world.failed == 0 and world.max_out() == 1


async def test_adoption_by_detaching_through_the_cloud_api(clock):
    world = swap_world(clock, names=("app-1", "app-2"), proxies=False)
    world.add_version(NEW)
    for h in world.hosts.values():
        h.admin = False  # an app that knows nothing of zdd-tui
    plan, deploy = make(world)
    assert dict(plan.adopt) == dict.fromkeys(world.hosts, "detach")
    rec = Recorder()
    out = await clock.run(engine(world, clock, plan, deploy, rec).run())
    assert out.status == OutcomeStatus.SUCCESS, out.message
    for n in world.hosts:
        assert world.ops(n) == ["pull", "lb_detach", "stop", "install_proxy", f"run_slot a {NEW}", "switch a",
                                "lb_attach", "prune"]
        assert Phase.LEAVING_LB in phases(rec, n)
    # The second leaves only once the first is back in the LB.
    back = next(t for t, n, op in world.log if n == "app-1" and op == "lb-in")
    assert back <= when(world, "app-2", "lb_detach")
    assert world.failed == 0 and world.max_out() == 1 and all(world.lb_state.values())


async def test_a_failed_adoption_brings_the_previous_version_back(clock):
    world = swap_world(clock, names=("app-1", "app-2"), proxies=False)
    world.add_version(NEW, "unhealthy")
    for h in world.hosts.values():
        h.admin = False
    plan, deploy = make(world, start_timeout=5)
    out = await clock.run(engine(world, clock, plan, deploy, Recorder()).run())
    assert out.status == OutcomeStatus.HALTED and out.failed_step == Phase.CHECKING_HEALTH
    h = world.hosts["app-1"]
    # Out of the LB, old stopped, proxy installed, new never healthy: removed; the previous
    # version comes back behind the proxy, then the host goes back into the LB.
    assert world.ops("app-1") == ["pull", "lb_detach", "stop", "install_proxy", f"run_slot a {NEW}", "stop_slot a",
                                  f"remove app-a-{NEW}", f"run_slot b {OLD}", "switch b", "lb_attach"]
    assert world.tags()["app-1"] == OLD and h.installed and h.active == "b"
    assert all(world.lb_state.values()) and world.failed == 0
    assert world.ops("app-2") == ["pull"]


# ---- the application layer ---------------------------------------------------------------------

async def test_strategy_from_the_config_and_overridden(clock):
    from zdd_tui.config import Config
    from zdd_tui.errors import UsageError

    world = swap_world(clock)
    world.add_version(NEW)
    project = fake_project(world, Config(), cloud_cls=FakeSwapCloud)
    plan = await clock.run(project.plan("deploy", NEW))
    assert plan.strategy == "local-swap" and plan.batch_size == 1
    assert {h.from_tag for h in plan.hosts} == {OLD}  # the tag on the proxy's active slot
    other = await clock.run(project.plan("deploy", NEW, "lb-drain"))
    assert other.strategy == "lb-drain"
    with pytest.raises(UsageError, match="not a deploy strategy"):
        await clock.run(project.plan("deploy", NEW, "blue-green"))
    out = await clock.run(project.run(plan))
    assert out.status == OutcomeStatus.SUCCESS and world.tags() == dict.fromkeys(world.hosts, NEW)
    # Settled on the active slot: nothing left to do.
    again = await clock.run(project.plan("deploy", NEW))
    assert again.hosts == () and set(again.unchanged) == set(world.hosts)
    # Rollback to the kept version: the same cycle, back to slot a.
    back = await clock.run(project.run(await clock.run(project.plan("rollback", OLD))))
    assert back.status == OutcomeStatus.SUCCESS and world.tags() == dict.fromkeys(world.hosts, OLD)
    assert all(h.active == "a" for h in world.hosts.values())


async def test_a_single_serving_host_without_a_proxy_is_refused(clock):
    from zdd_tui.config import Config
    from zdd_tui.errors import RefusedError

    world = swap_world(clock, names=("app-1",), proxies=False)
    world.add_version(NEW)
    project = fake_project(world, Config(), cloud_cls=FakeSwapCloud)
    with pytest.raises(RefusedError, match="only host"):
        await clock.run(project.plan("deploy", NEW))
    assert world.ops("app-1") == []


async def test_a_runtime_without_proxy_support_is_refused_for_local_swap(clock):
    from zdd_tui.config import Config
    from zdd_tui.errors import RefusedError

    from .fakes import World

    world = World(clock)
    world.add_version(NEW)
    project = fake_project(world, Config(), cloud_cls=FakeSwapCloud)  # FakeHost: lb-drain only
    assert project.config.deploy.strategy == "lb-drain"
    with pytest.raises(RefusedError, match="cannot run local-swap"):
        await clock.run(project.plan("deploy", NEW, "local-swap"))


def test_cli_takes_strategy_on_deploy_and_rollback():
    from zdd_tui.cli import build_parser

    p = build_parser(eager=True)
    assert p.parse_args(["deploy", "--strategy", "lb-drain", "--yes"]).strategy == "lb-drain"
    assert p.parse_args(["rollback", "sha-abc1234", "--strategy", "local-swap"]).strategy == "local-swap"
    assert p.parse_args(["deploy"]).strategy is None
    with pytest.raises(SystemExit):
        p.parse_args(["deploy", "--strategy", "blue-green"])


async def test_a_stop_request_before_the_switch_leaves_the_host_as_it_was(clock):
    import asyncio

    world = swap_world(clock)
    world.add_version(NEW, start_delay=3.0)  # still starting when the operator asks to stop
    plan, deploy = make(world)
    cancel = asyncio.Event()
    clock.call_at(2.5, cancel.set)
    rec = Recorder()
    e = Engine(plan, world.hosts, FakeSwapCloud(world), world.settings, deploy, listeners=[rec], clock=clock,
               cancel=cancel)
    out = await clock.run(e.run())
    assert out.status == OutcomeStatus.INTERRUPTED
    assert world.ops("app-1") == ["pull", f"run_slot b {NEW}", "stop_slot b", f"remove app-b-{NEW}"]
    assert world.hosts["app-1"].switch_calls == 0 and phases(rec, "app-1")[-1] == Phase.RESTORED
    assert world.tags() == dict.fromkeys(world.hosts, OLD) and world.failed == 0


async def test_adoption_whose_proxy_never_starts_puts_the_old_container_back(clock):
    world = swap_world(clock, proxies=False)
    world.add_version(NEW)
    world.hosts["app-1"].fail_install = True
    plan, deploy = make(world)
    out = await clock.run(engine(world, clock, plan, deploy, Recorder()).run())
    assert out.status == OutcomeStatus.HALTED, out.message
    assert out.failed_host == "app-1" and out.failed_step == Phase.INSTALLING_PROXY
    # No proxy runs, so its version comes back as it ran before: the single container, serving.
    h = world.hosts["app-1"]
    assert not h.installed and world.tags() == dict.fromkeys(world.hosts, OLD)
    assert world.ops("app-1") == ["pull", "drain", "stop", "install_proxy", f"run {OLD}"]
    assert world.failed == 0


async def test_the_crash_check_runs_beside_the_health_probe_not_after_it(clock):
    # Listing the slot containers is a round trip (two commands over SSH): while the new container
    # starts, it must not delay the probe that decides when traffic moves.
    world = swap_world(clock)
    world.add_version(NEW, start_delay=0.6)
    plan, deploy = make(world, batch_size=1)
    for h in world.hosts.values():
        listed = h.slot_containers

        async def slow(listed=listed):
            await clock.sleep(0.4)
            return await listed()

        h.slot_containers = slow
    rec = Recorder()
    out = await clock.run(engine(world, clock, plan, deploy, rec).run())
    assert out.status == OutcomeStatus.SUCCESS, out.message
    assert world.failed == 0
    for host in world.hosts:
        at = {e.phase: e.at for e in rec.of(PhaseChanged) if e.host == host}
        started = when(world, host, f"run_slot b {NEW}") + world.start_s
        assert at[Phase.CHECKING_HEALTH] < started + 0.6  # still starting when the checks begin
        # healthy 0.6 s after its start: seen by the next probe (0.1 s apart), not after a listing (0.4 s)
        assert at[Phase.SWITCHING] - started <= 0.6 + 0.1 + 1e-6


async def test_the_proxy_is_not_asked_again_right_after_a_switch_it_confirmed(clock):
    # switch() returns once the proxy's own API names the new slot: asking again is a round trip
    # (three requests) on every host's path for nothing.
    world = swap_world(clock)
    world.add_version(NEW)
    plan, deploy = make(world, batch_size=1)
    asked: list[tuple[float, str]] = []
    for name, h in world.hosts.items():
        status = h.proxy

        async def counted(status=status, name=name):
            asked.append((clock.now(), name))
            return await status()

        h.proxy = counted
    rec = Recorder()
    out = await clock.run(engine(world, clock, plan, deploy, rec).run())
    assert out.status == OutcomeStatus.SUCCESS, out.message
    for host in world.hosts:
        switched = when(world, host, "switch b")
        done = next(e.at for e in rec.of(PhaseChanged) if e.host == host and e.phase is Phase.DONE)
        assert not [t for t, n in asked if n == host and switched <= t < done]
    proxy_views = [e for e in rec.of(HealthChanged) if e.view == "proxy" and e.detail == "active slot b"]
    assert {e.host for e in proxy_views} == set(world.hosts)  # still reported, from what switch() confirmed


async def test_the_old_container_stops_beside_the_next_batch_and_a_failed_stop_only_warns(clock):
    # How long the old process takes to exit is nobody's wait once traffic left it; a stop that
    # fails leaves a container that serves nothing, which the next deploy stops first.
    world = swap_world(clock)
    world.stop_s = 3.0
    world.add_version(NEW)
    plan, deploy = make(world, batch_size=1)
    failing = world.hosts["app-2"]
    real_stop = failing.stop_slot

    async def broken(slot, grace_seconds):
        failing._note(f"stop_slot {slot}")
        raise RuntimeError("docker: Error response from daemon: cannot stop container")

    failing.stop_slot = broken
    rec = Recorder()
    out = await clock.run(engine(world, clock, plan, deploy, rec).run())
    assert out.status == OutcomeStatus.SUCCESS, out.message
    assert out.fleet == dict.fromkeys(world.hosts, NEW) and world.failed == 0
    # The next host started while the one before it was still stopping its old container (3 s).
    assert when(world, "app-1", "stop_slot a") <= when(world, "app-2", f"run_slot b {NEW}") \
        < when(world, "app-1", "prune")
    assert when(world, "app-3", "prune") - when(world, "app-1", "stop_slot a") < 3 * world.stop_s
    # The old container on app-2 still runs, not served; the warning says so.
    assert [(s.slot, s.c.state) for s in failing.slots] == [("a", "running"), ("b", "running")]
    assert failing.active == "b"
    warned = [e.line for e in rec.of(LogLine) if e.host == "app-2" and e.level == "warning"]
    assert any("could not stop the old container on slot a" in w and "cannot stop container" in w
               for w in warned)
    # Every host DONE, and journaled done, before the outcome.
    finished = rec.events.index(next(e for e in rec.events if type(e).__name__ == "RolloutFinished"))
    for n in world.hosts:
        done = [i for i, e in enumerate(rec.events) if isinstance(e, PhaseChanged) and e.host == n
                and e.phase is Phase.DONE]
        assert done and done[0] < finished
    records = (await read_records(world.hosts)).records
    assert {r["host"]: r["outcome"] for r in records if r["type"] == "host"} == dict.fromkeys(world.hosts, "done")
    # The next deploy finds app-2's leftover on the slot it needs and stops it first.
    world.add_version(OLD2 := "sha-ccccccc")
    failing.stop_slot = real_stop
    plan2, deploy2 = make(world, tag=OLD2, batch_size=1)
    out2 = await clock.run(engine(world, clock, plan2, deploy2, Recorder()).run())
    assert out2.status == OutcomeStatus.SUCCESS, out2.message
    second = world.ops("app-2")[world.ops("app-2").index("prune") + 1:]
    assert second[:3] == ["pull", "stop_slot a", f"run_slot a {OLD2}"], second
