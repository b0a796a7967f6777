"""EngineOptions.before_changes (the release command's hook point): awaited once, after every
host has pulled and before any host changes; ChangesRefused stops the rollout there (REFUSED)."""

from __future__ import annotations

from zdd_tui.events import LogLine
from zdd_tui.rollout.engine import ChangesRefused, EngineOptions
from zdd_tui.rollout.events import OutcomeStatus, Phase, PhaseChanged
from zdd_tui.rollout.listeners import Recorder

from .fakes import FakeClock, World
from .test_rollout_engine import NEW, engine, make


async def test_the_hook_runs_once_after_the_pulls_and_before_any_change():
    clock = FakeClock()
    world = World(clock)
    world.add_version(NEW)
    plan, deploy = make(world)
    calls: list[list[str]] = []

    async def hook(log) -> None:
        calls.append([op for _, _, op in world.log if not op.startswith(("lb-", "request"))])
        await log("app-1", "release | migrated", "info")

    rec = Recorder()
    out = await clock.run(engine(world, clock, plan, deploy, rec, options=EngineOptions(before_changes=hook)).run())
    assert out.status == OutcomeStatus.SUCCESS, out.message
    assert calls == [["pull"] * len(world.hosts)]
    lines = [e.line for e in rec.of(LogLine)]
    assert "release | migrated" in lines


async def test_a_refusal_changes_nothing():
    clock = FakeClock()
    world = World(clock)
    world.add_version(NEW)
    before = world.tags()
    plan, deploy = make(world)

    async def hook(log) -> None:
        raise ChangesRefused("the release command exited with 3 on app-1", "relation exists")

    rec = Recorder()
    out = await clock.run(engine(world, clock, plan, deploy, rec, options=EngineOptions(before_changes=hook)).run())
    assert out.status == OutcomeStatus.REFUSED and out.seen == "relation exists"
    assert out.message.startswith("the release command exited with 3 on app-1: nothing was changed")
    assert world.tags() == before
    assert all(world.ops(n) == ["pull"] for n in world.hosts)
    assert {e.phase for e in rec.of(PhaseChanged)} <= {Phase.PULLING, Phase.PENDING, Phase.SKIPPED}
