"""The canary gate in virtual time (local-swap): the first batch switches and soaks while its old
container keeps running; its proxies' counters are compared with those of the hosts still on the
old version. Each host's proxy serves a programmable load per version (swapfakes.Load), so the
verdicts and their numbers are exact."""

from __future__ import annotations

import json

import pytest

from zdd_tui.config import CanaryConfig, DeployConfig
from zdd_tui.rollout.canary import judge
from zdd_tui.rollout.engine import Engine, EngineOptions
from zdd_tui.rollout.events import (
    CanaryState,
    CanaryUpdate,
    OutcomeStatus,
    Phase,
    PhaseChanged,
    TrafficSampled,
)
from zdd_tui.rollout.journal import Journal, read_records
from zdd_tui.rollout.listeners import Recorder
from zdd_tui.rollout.plan import build_plan
from zdd_tui.traffic import INF, Counters

from .fakes import FakeClock
from .swapfakes import FakeSwapCloud, Load, swap_world
from .test_localswap import NEW, OLD, REPO, facts_of

HOSTS = ("app-1", "app-2", "app-3", "app-4")


@pytest.fixture
def clock():
    return FakeClock()


def world_with(clock, new: Load, old: Load | None = None, hosts=HOSTS):
    old = old or Load()
    world = swap_world(clock, names=hosts)
    world.add_version(NEW)
    for h in world.hosts.values():
        h.source = lambda host, slot, tag: new if tag == NEW else old
    return world


def deploy_config(**canary) -> DeployConfig:
    return DeployConfig(batch_size=2, start_timeout_seconds=20, margin_seconds=2, stop_grace_seconds=10,
                        pull_timeout_seconds=60, retain=2, canary=CanaryConfig(**canary))


def planned(world, deploy, **kw):
    return build_plan(facts_of(world), NEW, f"{REPO}:{NEW}", world.settings, deploy, strategy="local-swap", **kw)


async def roll(world, clock, deploy, *, cancel=None, **kw):
    plan = planned(world, deploy, **kw)
    rec = Recorder()
    eng = Engine(plan, world.hosts, FakeSwapCloud(world), world.settings, deploy, listeners=[rec], clock=clock,
                 journal=Journal(world.hosts, wallclock=clock.now), cancel=cancel, operator="tester@box",
                 options=EngineOptions())
    out = await clock.run(eng.run())
    return plan, out, rec


async def test_good_version_passes_and_reaches_every_host(clock):
    world = world_with(clock, Load(rps=10, error_share=0.001, latency=0.02), Load(rps=10, error_share=0.001,
                                                                                   latency=0.02))
    plan, out, rec = await roll(world, clock, deploy_config())
    assert plan.canary_hosts == ("app-1",) and plan.canary_seconds == 60
    assert out.status == OutcomeStatus.SUCCESS, out.message
    assert world.tags() == dict.fromkeys(HOSTS, NEW)
    assert out.canary is not None and out.canary.state is CanaryState.PASSED
    assert out.canary.baseline_hosts == ("app-2", "app-3", "app-4")
    assert 590 <= out.canary.canary.requests <= 610 and 1780 <= out.canary.baseline.requests <= 1820
    soaking = [e for e in rec.of(CanaryUpdate) if e.report.state is CanaryState.SOAKING]
    assert len(soaking) >= 55
    assert rec.of(TrafficSampled)


def canary_phases(rec: Recorder, host: str) -> list[Phase]:
    return [e.phase for e in rec.of(PhaseChanged) if e.host == host]


async def test_old_container_runs_through_the_soak_and_stops_after_the_pass(clock):
    world = world_with(clock, Load())
    seen: list[tuple[str, ...]] = []

    def during():
        h = world.hosts["app-1"]
        seen.append(tuple(sorted(f"{s.slot}:{s.c.tag}:{s.c.state}" for s in h.slots)))

    plan = planned(world, deploy_config())
    rec = Recorder()
    eng = Engine(plan, world.hosts, FakeSwapCloud(world), world.settings, deploy_config(),
                 listeners=[rec, lambda e: during() if isinstance(e, CanaryUpdate) else None], clock=clock)
    out = await clock.run(eng.run())
    assert out.status == OutcomeStatus.SUCCESS, out.message
    assert seen[0] == (f"a:{OLD}:running", f"b:{NEW}:running")  # both run while the canary soaks
    assert canary_phases(rec, "app-1")[-4:] == [Phase.DRAINING_OLD, Phase.SOAKING, Phase.STOPPING_OLD, Phase.DONE]
    assert Phase.SOAKING not in canary_phases(rec, "app-2")
    assert world.hosts["app-1"].active == "b"
    # No other host switched before the verdict.
    verdict_at = next(e.at for e in rec.of(CanaryUpdate) if e.report.state is not CanaryState.SOAKING)
    assert all(t > verdict_at for t, n, op in world.log if op.startswith("switch") and n != "app-1")


async def assert_caught(world, clock, out, rec):
    assert out.status == OutcomeStatus.HALTED and out.restored
    assert out.canary is not None and out.canary.state is CanaryState.FAILED
    one = world.hosts["app-1"]
    assert one.active == "a"  # back on the old slot
    assert [(s.slot, s.c.tag, s.c.state) for s in one.slots] == [("a", OLD, "running")]  # new one removed
    assert not any(op.startswith("run_slot a") for op in world.ops("app-1"))  # the old one never restarted
    for other in ("app-2", "app-3", "app-4"):
        assert world.ops(other) == ["pull"], world.ops(other)  # pulled, nothing else
    assert world.tags() == dict.fromkeys(HOSTS, OLD) == out.fleet
    assert canary_phases(rec, "app-1")[-1] is Phase.RESTORED
    assert {e.phase for e in rec.of(PhaseChanged) if e.host != "app-1"} <= {Phase.PULLING, Phase.PENDING,
                                                                                 Phase.SKIPPED}
    assert world.failed == 0
    doc = json.loads(json.dumps(out.canary.canary.to_dict())), json.loads(json.dumps(out.canary.baseline.to_dict()))
    assert doc[0]["requests"] >= 200 and doc[1]["requests"] >= 200


async def test_error_rate_version_is_caught_and_the_canary_goes_back(clock):
    world = world_with(clock, Load(rps=10, error_share=0.05), Load(rps=10, error_share=0.001))
    _plan, out, rec = await roll(world, clock, deploy_config())
    await assert_caught(world, clock, out, rec)
    c, b = out.canary.canary, out.canary.baseline
    assert c.error_share == pytest.approx(0.05, abs=0.005) and b.error_share == pytest.approx(0.001, abs=0.002)
    assert "5xx 5.00% on the new version" in out.canary.reason and "judged the new version worse" in out.message
    assert "canary failed" in out.text() and f"{c.requests} req, {c.errors} 5xx" in out.text()
    from zdd_tui.project.rollout import exit_code_for

    assert exit_code_for(out) == 3
    records = (await read_records(world.hosts)).records
    assert any(r.get("phase") == "canary" and r.get("detail", "").startswith("failed:") for r in records)


async def test_slow_version_is_caught_by_its_p95(clock):
    world = world_with(clock, Load(rps=10, latency=0.3), Load(rps=10, latency=0.02))
    _plan, out, rec = await roll(world, clock, deploy_config())
    await assert_caught(world, clock, out, rec)
    assert out.canary.canary.p95 > 0.25 and out.canary.baseline.p95 < 0.03
    assert "p95" in out.canary.reason


async def test_insufficient_traffic_proceeds_with_a_warning(clock):
    world = world_with(clock, Load(rps=1), Load(rps=1))
    _plan, out, _rec = await roll(world, clock, deploy_config())
    assert out.status == OutcomeStatus.SUCCESS, out.message
    assert out.canary is not None and out.canary.state is CanaryState.INSUFFICIENT
    assert "too few requests" in out.canary.reason and world.tags() == dict.fromkeys(HOSTS, NEW)


async def test_insufficient_traffic_with_halt_puts_the_canary_back(clock):
    world = world_with(clock, Load(rps=1), Load(rps=1))
    _plan, out, _rec = await roll(world, clock, deploy_config(on_insufficient_traffic="halt"))
    assert out.status == OutcomeStatus.HALTED and out.canary.state is CanaryState.INSUFFICIENT
    assert world.tags() == dict.fromkeys(HOSTS, OLD)
    assert world.hosts["app-1"].active == "a" and len(world.hosts["app-1"].slots) == 1


async def test_no_traffic_reading_at_all_is_insufficient_and_never_fails_the_rollout(clock):
    world = world_with(clock, Load())
    for h in world.hosts.values():
        h.traffic_fails = True
    _plan, out, rec = await roll(world, clock, deploy_config())
    assert out.status == OutcomeStatus.SUCCESS and out.canary.state is CanaryState.INSUFFICIENT
    assert len(rec.of(TrafficSampled)) >= 60
    assert all(ht.rates is None for e in rec.of(TrafficSampled) for ht in e.hosts)


async def test_cancel_during_the_soak_puts_the_canary_back(clock):
    import asyncio

    world = world_with(clock, Load())
    cancel = asyncio.Event()
    plan = planned(world, deploy_config())
    rec = Recorder()

    def listener(e):
        rec(e)
        if isinstance(e, CanaryUpdate) and not e.report.warming_up and e.report.elapsed_seconds >= 10:
            cancel.set()

    eng = Engine(plan, world.hosts, FakeSwapCloud(world), world.settings, deploy_config(), listeners=[listener],
                 clock=clock, cancel=cancel)
    out = await clock.run(eng.run())
    assert out.status == OutcomeStatus.INTERRUPTED
    assert out.canary is None  # not judged
    assert world.tags() == dict.fromkeys(HOSTS, OLD)
    assert world.hosts["app-1"].active == "a" and len(world.hosts["app-1"].slots) == 1
    for other in ("app-2", "app-3", "app-4"):
        assert world.ops(other) == ["pull"]


def slow_at_first(world, clock, seconds: float, slow: Load, fast: Load):
    """A source whose new version serves `slow` for its first `seconds` after each host's switch,
    then `fast`; the old version `fast` throughout."""
    def source(host, slot, tag):
        if tag != NEW:
            return fast
        switched = max((t for t, n, op in world.log if n == host and op.startswith("switch")), default=None)
        return slow if switched is not None and clock.now() - switched < seconds else fast

    for h in world.hosts.values():
        h.source = source


@pytest.mark.parametrize(("warmup", "passes"), [(10, True), (15, True), (0, False), (5, False)])
async def test_a_version_slow_only_in_its_first_seconds_passes_once_they_are_a_warm_up(clock, warmup, passes):
    # Slow (300 ms) for its first 10 s after the switch, then as fast as the old version: a fresh
    # process warming up. Judged from the switch, those seconds put its p95 among the slow ones.
    world = world_with(clock, Load())
    slow_at_first(world, clock, 10, Load(rps=10, latency=0.3), Load(rps=10, latency=0.02))
    _plan, out, rec = await roll(world, clock, deploy_config(warmup_seconds=warmup))
    assert out.canary is not None
    if passes:
        assert out.status == OutcomeStatus.SUCCESS, out.message
        assert out.canary.state is CanaryState.PASSED and out.canary.canary.p95 < 0.03
        assert world.tags() == dict.fromkeys(HOSTS, NEW)
    else:
        assert out.status == OutcomeStatus.HALTED and out.canary.state is CanaryState.FAILED
        assert out.canary.canary.p95 > 0.25 and "p95" in out.canary.reason
        assert world.tags() == dict.fromkeys(HOSTS, OLD)
    # The judged window is the soak alone, after the warm-up: 60 s of the canary's 10 req/s.
    assert out.canary.elapsed_seconds == pytest.approx(60, abs=0.5)
    assert 590 <= out.canary.canary.requests <= 610
    assert out.canary.warmup_seconds == warmup and not out.canary.warming_up
    # The warm-up shows: updates that say so, counting against the warm-up, then the soak's.
    updates = [e.report for e in rec.of(CanaryUpdate)]
    warming = [r for r in updates if r.warming_up]
    assert len(warming) == (0 if warmup == 0 else pytest.approx(warmup + 1, abs=1))
    assert all(r.state is CanaryState.SOAKING and r.elapsed_seconds <= warmup + 0.01 for r in warming)
    assert updates[:len(warming)] == warming  # all before the soak's
    soaking = [r for r in updates[len(warming):] if r.state is CanaryState.SOAKING]
    assert len(soaking) >= 55 and soaking[0].elapsed_seconds < 1
    if warming:
        assert "warming up" in warming[0].text() and "not judged" in warming[0].text()


async def test_cancel_during_the_warm_up_puts_the_canary_back(clock):
    import asyncio

    world = world_with(clock, Load())
    cancel = asyncio.Event()
    deploy = deploy_config(warmup_seconds=20)
    plan = planned(world, deploy)
    rec = Recorder()

    def listener(e):
        rec(e)
        if isinstance(e, CanaryUpdate) and e.report.warming_up and e.report.elapsed_seconds >= 5:
            cancel.set()

    eng = Engine(plan, world.hosts, FakeSwapCloud(world), world.settings, deploy, listeners=[listener],
                 clock=clock, cancel=cancel)
    out = await clock.run(eng.run())
    assert out.status == OutcomeStatus.INTERRUPTED and out.canary is None
    assert all(e.report.warming_up for e in rec.of(CanaryUpdate))  # stopped before any soak
    assert world.tags() == dict.fromkeys(HOSTS, OLD)
    assert world.hosts["app-1"].active == "a" and len(world.hosts["app-1"].slots) == 1
    for other in ("app-2", "app-3", "app-4"):
        assert world.ops(other) == ["pull"]


def test_the_console_panel_says_the_canary_is_warming_up():
    from zdd_tui.rollout.events import CanaryReport
    from zdd_tui.traffic import Rates
    from zdd_tui.ui.graph import canary_text

    def report(elapsed: float, warming: bool) -> CanaryReport:
        return CanaryReport(CanaryState.SOAKING, ("app-1",), ("app-2",), Rates(1.0), Rates(1.0),
                            elapsed_seconds=elapsed, soak_seconds=60, warmup_seconds=10, warming_up=warming)

    warm = canary_text(report(4, True), CanaryConfig(), NEW, OLD, {}).plain
    assert "warming up (not judged): 6s left of 10s, then a 60s soak" in warm
    soak = canary_text(report(4, False), CanaryConfig(), NEW, OLD, {}).plain
    assert "soaking: 56s left of 60s" in soak and "warming" not in soak


def test_sides_on_different_buckets_are_compared_on_the_bounds_they_share():
    from zdd_tui.proxy.traefik import BUCKETS

    old_bounds = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)  # a proxy installed before

    def seen(latency: float, bounds: tuple[float, ...], n: int = 1000) -> Counters:
        return Counters(n, 0, tuple((le, n if latency <= le else 0) for le in (*bounds, INF)), n * latency)

    cfg = CanaryConfig()
    # The same 110 ms on both sides: alone, the old buckets read p95 242 ms, the new ones 147 ms.
    for canary, baseline in ((seen(0.11, old_bounds), seen(0.11, BUCKETS)),
                             (seen(0.11, BUCKETS), seen(0.11, old_bounds))):
        v = judge(canary, baseline, cfg)
        assert v.state is CanaryState.PASSED, v.reason
        assert "p95 242ms on the new version vs 242ms on the old" in v.reason
    assert judge(seen(0.3, BUCKETS), seen(0.11, old_bounds), cfg).state is CanaryState.FAILED


def counters(requests: int, errors: int, p95_ms: float) -> Counters:
    """All requests in one bucket ending at p95_ms (the interpolated p95 is 95% of the bound)."""
    le = p95_ms / 1000 / 0.95
    return Counters(requests, errors, ((le, requests), (INF, requests)), 0.0)


def test_thresholds_at_the_boundary():
    cfg = CanaryConfig(min_requests=200, max_error_rate_increase=0.01, max_latency_ratio=1.5, latency_floor_ms=50)
    old = counters(1000, 10, 100)
    assert judge(counters(1000, 20, 100), old, cfg).state is CanaryState.PASSED  # +1.00 points: allowed
    assert judge(counters(1000, 21, 100), old, cfg).state is CanaryState.FAILED  # +1.10 points
    assert judge(counters(1000, 10, 150), old, cfg).state is CanaryState.PASSED  # exactly 1.5x
    assert judge(counters(1000, 10, 151), old, cfg).state is CanaryState.FAILED
    fast = counters(1000, 0, 10)  # under the floor: counts as 50 ms
    assert judge(counters(1000, 0, 75), fast, cfg).state is CanaryState.PASSED
    assert judge(counters(1000, 0, 76), fast, cfg).state is CanaryState.FAILED
    assert judge(counters(199, 0, 10), old, cfg).state is CanaryState.INSUFFICIENT
    assert judge(counters(200, 0, 10), counters(199, 0, 10), cfg).state is CanaryState.INSUFFICIENT
    assert judge(counters(200, 0, 10), counters(200, 0, 10), cfg).state is CanaryState.PASSED
    failed = judge(counters(1000, 50, 100), old, cfg)
    assert "5.00%" in failed.reason and "1.00%" in failed.reason and "+1.00" in failed.reason


def test_plan_rules_and_preview(clock):
    world = world_with(clock, Load())
    plan = planned(world, deploy_config())
    assert plan.canary_hosts == ("app-1",) and plan.canary_seconds == 60
    assert "canary: app-1 soak 60s" in plan.text() and "canary's warm-up 10s and soak 60s" in plan.estimate_basis
    off = planned(world, deploy_config(enabled=False))
    assert off.canary_hosts == () and plan.estimated_seconds == pytest.approx(off.estimated_seconds + 70)
    cold = planned(world, deploy_config(warmup_seconds=0))
    assert "canary's soak 60s" in cold.estimate_basis and cold.estimated_seconds == pytest.approx(
        off.estimated_seconds + 60)
    assert planned(world, deploy_config(enabled=False), canary=True).canary_hosts == ("app-1",)
    assert planned(world, deploy_config(), canary=False).canary_hosts == ()
    assert planned(world, deploy_config(), action="rollback").canary_hosts == ()  # skipped unless asked
    assert planned(world, deploy_config(), action="resume").canary_hosts == ()
    assert planned(world, deploy_config(), action="rollback", canary=True).canary_hosts == ("app-1",)
    small = world_with(FakeClock(), Load(), hosts=("app-1", "app-2"))
    assert planned(small, deploy_config()).canary_hosts == ()  # auto: fleets of 3+
    assert planned(small, deploy_config(enabled=True)).canary_hosts == ("app-1",)
    assert planned(small, deploy_config(soak_seconds=30), canary=True).canary_seconds == 30


async def test_headless_text_shows_the_soak_every_5s_and_json_carries_every_sample(clock, tmp_path):
    import io

    from zdd_tui.actions import ActionsOutput
    from zdd_tui.headless import HeadlessRenderer

    world = world_with(clock, Load(rps=10, error_share=0.05), Load(rps=10, error_share=0.001))
    _plan, out, rec = await roll(world, clock, deploy_config(soak_seconds=20))
    assert out.status == OutcomeStatus.HALTED
    text, js = io.StringIO(), io.StringIO()
    people, machines = HeadlessRenderer(text), HeadlessRenderer(js, json_lines=True)
    people.actions = machines.actions = None
    summary = ActionsOutput(str(tmp_path / "summary.md"))
    for e in rec.events:
        people(e)
        machines(e)
        summary.note(e)
    lines = text.getvalue().splitlines()
    soak = [line for line in lines if "canary soaking" in line]
    assert 4 <= len(soak) <= 6  # 20 s, one line every ~5 s
    verdict = next(i for i, line in enumerate(lines) if "canary failed" in line and "[" in line[:3])
    c, b = out.canary.canary, out.canary.baseline
    assert f"new (app-1): {c.requests} req, {c.errors} 5xx" in lines[verdict + 1]
    assert f"old (app-2, app-3, app-4): {b.requests} req, {b.errors} 5xx" in lines[verdict + 2]
    assert not any(line.split("] ", 1)[-1].startswith("traffic:") for line in lines)
    docs = [json.loads(line) for line in js.getvalue().splitlines()]
    updates = [d for d in docs if d["kind"] == "canary"]
    assert len(updates) == len(rec.of(CanaryUpdate)) >= 20
    assert updates[-1]["report"]["state"] == "failed"
    assert updates[-1]["report"]["canary"]["errors"] == c.errors and updates[-1]["report"]["baseline"]["rps"] > 0
    samples = [d for d in docs if d["kind"] == "traffic"]
    assert len(samples) == len(rec.of(TrafficSampled)) >= 20
    one = next(h for h in samples[-1]["hosts"] if h["host"] == "app-2")
    assert one["rates"]["rps"] == pytest.approx(10, rel=0.2) and one["by_tag"][0][0] == OLD
    finished = next(d for d in docs if d["kind"] == "finished")
    assert finished["outcome"]["canary"]["state"] == "failed"
    md = (tmp_path / "summary.md").read_text()
    errors = sum(h.rates.errors for e in rec.of(TrafficSampled) for h in e.hosts if h.rates is not None)
    assert errors > 0 and f"Failed requests seen: {errors} " in md
    assert "**Canary:** failed" in md and f"{c.requests} requests, {c.errors} 5xx" in md


async def test_traffic_samples_follow_the_switch_per_version(clock):
    world = world_with(clock, Load(rps=20), Load(rps=10))
    _plan, out, rec = await roll(world, clock, deploy_config(enabled=False))
    assert out.status == OutcomeStatus.SUCCESS
    samples = rec.of(TrafficSampled)
    assert samples and all(len(e.hosts) == 4 for e in samples)
    first, last = samples[0], samples[-1]
    assert all(dict(h.by_tag).keys() == {OLD} for h in first.hosts)
    one = next(h for h in last.hosts if h.host == "app-1")  # switched first
    assert dict(one.by_tag).keys() == {NEW} and one.rates.rps == pytest.approx(20, rel=0.2)
    for name in HOSTS:  # each host's switch shows as the new version in its samples
        assert any(NEW in dict(h.by_tag) for e in samples for h in e.hosts if h.host == name)


async def test_project_plans_lb_drain_refuses_a_canary_and_rollback_skips_it(clock):
    from zdd_tui.config import Config
    from zdd_tui.errors import UsageError
    from zdd_tui.project.rollout import plan_deploy, plan_rollback

    from .fakes import fake_project

    world = world_with(clock, Load())
    config = Config(deploy=deploy_config())
    project = fake_project(world, config)
    assert (await plan_deploy(project, NEW)).canary_hosts == ("app-1",)
    assert (await plan_deploy(project, NEW, canary=False)).canary_hosts == ()
    assert (await plan_rollback(project, NEW)).canary_hosts == ()
    assert (await plan_rollback(project, NEW, canary=True)).canary_hosts == ("app-1",)
    with pytest.raises(UsageError) as err:
        await plan_deploy(project, NEW, "lb-drain", canary=True)
    assert "--canary needs the local-swap strategy" in str(err.value) and err.value.exit_code == 2
    auto = await plan_deploy(project, NEW, "lb-drain")  # auto: none, and the plan says so
    assert auto.canary_hosts == () and "no canary: it needs the local-swap strategy" in auto.notes
    on = fake_project(world, Config(deploy=deploy_config(enabled=True)))
    with pytest.raises(UsageError) as err:
        await plan_deploy(on, NEW, "lb-drain")
    assert "deploy.canary.enabled is true" in str(err.value) and "--no-canary" in err.value.hint
    assert (await plan_deploy(on, NEW, "lb-drain", canary=False)).canary_hosts == ()
    assert (await plan_rollback(on, NEW, "lb-drain")).canary_hosts == ()  # a rollback skips it: no refusal


def test_the_warm_up_key():
    from zdd_tui.config import ConfigError, parse_config

    def canary(extra: str):
        return parse_config(f"app: myapp\ndeploy:\n  canary:\n{extra}").deploy.canary

    assert canary("    soak_seconds: 30\n").warmup_seconds == 10  # the default
    assert canary("    warmup_seconds: 0\n").warmup_seconds == 0  # judged from the switch
    assert canary("    warmup_seconds: 120\n").warmup_seconds == 120
    for bad in ("-1", "601", "soon"):
        with pytest.raises(ConfigError) as err:
            canary(f"    warmup_seconds: {bad}\n")
        assert "warmup_seconds" in str(err.value)


def test_cli_flags():
    from zdd_tui.cli import build_parser

    p = build_parser(eager=True)
    assert p.parse_args(["deploy", "--no-canary"]).canary is False
    assert p.parse_args(["deploy", "--canary"]).canary is True
    assert p.parse_args(["deploy"]).canary is None
    assert p.parse_args(["rollback", "--canary"]).canary is True
    assert p.parse_args(["rollback"]).canary is None
    with pytest.raises(SystemExit):
        p.parse_args(["rollback", "--no-canary"])
