"""Every console flow against a real sandbox (API, LB proxy, host processes) through Pilot.

The engine's events drive the screen; each test then checks the fleet itself (what each host's
container runs, its own health, the lock) rather than only what the screen says.
"""

from __future__ import annotations

import pytest

from zdd_tui.rollout.events import OutcomeStatus, Phase
from zdd_tui.ui.app import ZddApp
from zdd_tui.ui.screens.confirm import ConfirmScreen
from zdd_tui.ui.screens.dashboard import DashboardScreen
from zdd_tui.ui.screens.rollout import RolloutScreen
from zdd_tui.ui.widgets import FleetTable

from .conftest import sandbox_config, tag_with, until
from .screentext import screen_text

pytestmark = pytest.mark.slow
SIZE = (140, 44)


def fleet_tags(sandbox) -> dict[str, str | None]:
    """What each host's container runs, asked of the sandbox's host manager (not the UI)."""
    out = {}
    for name, host in sorted(sandbox.hosts.hosts.items()):
        c = host.inspect()
        out[name] = c["tag"] if c and c.get("state") == "running" else None
    return out


async def lock_text(source) -> str | None:
    d = source._droplets[0]
    return await source.project.runtime(d).state_read("deploy.lock")


async def dashboard_filled(pilot, app):
    await until(
        pilot,
        lambda: app.fleet.droplets and len(app.fleet.hosts) == len(app.fleet.droplets)
        and app.fleet.tags and app.fleet.lb is not None
        and all(h.tag for h in app.fleet.hosts.values()),
        timeout=20,
        what="the dashboard to fill",
    )
    await pilot.pause(0.2)


async def pick(pilot, app, tag: str | None = None):
    """In the version picker (open), move to `tag` (None: keep the preselected row), Enter."""
    from textual.widgets import OptionList

    from zdd_tui.ui.screens.picker import VersionPicker

    await until(pilot, lambda: isinstance(app.screen, VersionPicker) and app.screen.versions is not None,
                what="the version picker")
    await pilot.pause()
    box = app.screen.query_one("#picker-list", OptionList)
    if tag is not None:
        box.highlighted = box.get_option_index(tag)
        await pilot.pause()
    await pilot.press("enter")


async def run_to_outcome(pilot, app, timeout=120):
    await until(pilot, lambda: isinstance(app.screen, RolloutScreen), timeout=15, what="the rollout view")
    screen = app.screen
    await until(pilot, lambda: screen.outcome is not None, timeout=timeout, what="the rollout's outcome")
    return screen


async def test_dashboard_fills_from_the_sandbox(sandbox, source):
    initial = {h["name"]: h["tag"] for h in sandbox.info["hosts"]}
    app = ZddApp(source)
    async with app.run_test(size=SIZE) as pilot:
        await dashboard_filled(pilot, app)
        text = screen_text(app)
        assert "SANDBOX" in text
        droplets = app.screen.query_one("#droplets", FleetTable)
        assert droplets._order == sorted(initial)
        for name, tag in initial.items():
            row = droplets._shown[name]
            assert row[4] == tag and row[5].word == "healthy"
            assert f"{name}" in text
        assert "✔ healthy" in text  # glyph and word, not colour alone
        assert app.fleet.lb.name in text
        latest = next(t for t in app.fleet.tags if t.tag == "latest")
        assert latest.manifest_digest.split(":")[1][:10] in text
        assert "API " in text and "/40 req/min" in text  # rate limit and budget in the status bar
        # The registry pane is newest first and says where each tag runs, and labels the
        # sandbox's failure modes.
        tags = app.screen.query_one("#tags", FleetTable)
        await until(pilot, lambda: app.fleet.tag_labels, what="the sandbox's labels")
        await pilot.pause(0.2)
        rows = dict(tags._all)
        assert rows[next(iter(initial.values()))][4] == f"● now on {', '.join(sorted(initial))}"
        assert rows[tag_with(sandbox, "crash")][0].endswith(" · crashes")


async def test_deploy_cancelled_changes_nothing(sandbox, source):
    before = fleet_tags(sandbox)
    app = ZddApp(source)
    async with app.run_test(size=SIZE) as pilot:
        await dashboard_filled(pilot, app)
        await pilot.press("d")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the deploy confirmation")
        assert app.poller.paused  # nothing polls behind a dialog
        text = screen_text(app)
        for name in before:
            assert name in text
        await pilot.press("n")
        await until(pilot, lambda: isinstance(app.screen, DashboardScreen), what="the dashboard again")
        await until(pilot, lambda: not app.poller.paused, timeout=5, what="polling to resume")
        await pilot.pause(1.0)
        assert app.rollout is None
    assert fleet_tags(sandbox) == before
    assert await lock_text(source) is None


async def test_deploy_confirmed_then_rollback_to_chosen_tag(sandbox, source):
    before = fleet_tags(sandbox)
    old = next(iter(before.values()))
    newest_good = next(t["tag"] for t in sandbox.info["tags"]
                       if t["behaviour"] == "ok" and t["tag"] not in ("latest", old))
    app = ZddApp(source)
    async with app.run_test(size=SIZE) as pilot:
        await dashboard_filled(pilot, app)
        await pilot.press("d")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the deploy confirmation")
        assert newest_good in screen_text(app)
        await pilot.press("y")
        screen = await run_to_outcome(pilot, app)
        assert screen.outcome.status is OutcomeStatus.SUCCESS, screen.outcome
        assert all(r.phase is Phase.DONE for r in screen.rows.values())
        assert "SUCCESS" in screen_text(app)
        assert fleet_tags(sandbox) == dict.fromkeys(before, newest_good)

        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, DashboardScreen), what="the dashboard")
        await pilot.press("r")  # the version that ran before is preselected: r, Enter, y
        await pick(pilot, app)
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the rollback confirmation")
        text = screen_text(app)
        assert f"Roll back to {old}" in text
        for name in before:
            assert name in text
        await pilot.press("y")
        screen = await run_to_outcome(pilot, app)
        assert screen.outcome.status is OutcomeStatus.SUCCESS, screen.outcome
    after = fleet_tags(sandbox)
    assert after == before, after
    for host in sandbox.hosts.hosts.values():
        assert host.inspect()["state"] == "running"
    assert await lock_text(source) is None


async def test_broken_version_shows_halted_outcome_and_host_is_restored(sandbox, source):
    before = fleet_tags(sandbox)
    bad = tag_with(sandbox, "unhealthy")
    app = ZddApp(source)
    async with app.run_test(size=SIZE) as pilot:
        await dashboard_filled(pilot, app)
        await pilot.press("d")  # the plan of the default tag, then o: another tag, the broken one
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the deploy plan")
        await pilot.press("o")
        await pick(pilot, app, bad)
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the confirmation")
        assert f"Deploy to {bad}" in screen_text(app)
        await pilot.press("y")
        screen = await run_to_outcome(pilot, app, timeout=180)
        o = screen.outcome
        assert o.status is OutcomeStatus.HALTED, o
        assert o.restored and o.failed_host in before
        text = screen_text(app)
        assert "HALTED" in text and o.failed_host in text
        failed_row = screen.rows[o.failed_host]
        assert failed_row.phase in (Phase.RESTORED, Phase.FAILED)
        others = [r for n, r in screen.rows.items() if n != o.failed_host]
        assert all(r.phase in (Phase.SKIPPED, Phase.PENDING) for r in others)
    # The whole fleet runs what it ran before: the failed host restored, the rest untouched.
    assert fleet_tags(sandbox) == before
    assert await lock_text(source) is None


async def test_quit_during_rollout_stops_safely(sandbox, source):
    before = fleet_tags(sandbox)
    old = next(iter(before.values()))
    app = ZddApp(source)
    async with app.run_test(size=SIZE) as pilot:
        await dashboard_filled(pilot, app)
        await pilot.press("d")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the confirmation")
        await pilot.press("y")
        await until(pilot, lambda: isinstance(app.screen, RolloutScreen), what="the rollout view")
        screen = app.screen
        first = next(iter(screen.rows.values()))
        await until(pilot, lambda: first.phase not in (Phase.PENDING, Phase.PULLING), what="the first host to start")
        await pilot.press("q")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the quit question")
        assert "Quit during a rollout?" in screen_text(app)
        await pilot.press("y")
        await until(pilot, lambda: screen.outcome is not None, timeout=90, what="the engine to stop")
        assert screen.outcome.status is OutcomeStatus.INTERRUPTED, screen.outcome
        last = screen.plan.hosts[-1].name
        await until(pilot,
                    lambda: not app.is_running or app._exit_renderables is not None or app.return_code is not None,
                    timeout=20, what="the app to exit")
    after = fleet_tags(sandbox)
    # Never half-deployed: each host runs the old or the new version, serving and not draining.
    assert all(t is not None for t in after.values()), after
    assert sum(t != old for t in after.values()) <= 1, after  # at most the host that was in progress
    assert after[last] == old  # the host not reached yet was never touched
    for host in sandbox.hosts.hosts.values():
        assert host.inspect()["state"] == "running"
    # Closing the app closed the source; check the lock through a fresh session.
    from zdd_tui.project import Project
    from zdd_tui.ui.source import FleetSource

    fresh = FleetSource(await Project.open(sandbox_config(sandbox)), label="")
    try:
        await fresh.droplets()
        assert await lock_text(fresh) is None
        state = await fresh.hosts()
        assert all(s.probe and s.probe.healthy for s in state.values()), state
    finally:
        await fresh.close()


async def test_rollout_started_elsewhere_shows_up_live(sandbox, source):
    """A headless deploy in 'another terminal' (its own session) appears from the hosts' lock
    and journal, and the console refuses to start a second one meanwhile."""
    import asyncio

    from zdd_tui.project import Project

    app = ZddApp(source)
    async with app.run_test(size=SIZE) as pilot:
        await dashboard_filled(pilot, app)
        other = await Project.open(sandbox_config(sandbox))
        try:
            plan = await other.plan_deploy("latest")
            job = asyncio.create_task(other.run(plan, []))
            await until(pilot, lambda: app.fleet.rollout is not None and app.fleet.rollout.phases,
                        timeout=20, what="the console to see the rollout")
            assert not app.fleet.rollout.ours
            await pilot.pause(0.3)
            text = screen_text(app)
            assert "in progress, started by" in text and app.fleet.rollout.holder in text
            await pilot.press("d")
            await pilot.pause(0.5)
            assert isinstance(app.screen, DashboardScreen)  # refused: no confirmation, no plan
            outcome = await asyncio.wait_for(job, 120)
            assert outcome.status is OutcomeStatus.SUCCESS
            await until(pilot, lambda: app.fleet.rollout is None, timeout=10, what="the banner to clear")
        finally:
            await other.close()
