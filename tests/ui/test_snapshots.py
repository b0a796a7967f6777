"""SVG snapshots of the console's main screens (pytest-textual-snapshot).

Deterministic: a fixed fake fleet (tests/ui/fake.py FakeSource: the real Project and engine on
the fake world, fixed addresses, digests, a fixed "now"), one poll and no polling loop, rollouts
in virtual time that can hold at a chosen event. Update with
`pytest tests/ui/test_snapshots.py --snapshot-update` after a deliberate change, and look at the
new SVGs before committing them.
"""

from __future__ import annotations

from zdd_tui.ui.app import ZddApp
from zdd_tui.ui.widgets import FleetTable

from .fake import FakeSource

SIZE = (120, 36)


def make_app(**kw) -> tuple[ZddApp, FakeSource]:
    src = FakeSource(**kw)
    return ZddApp(src, poll="once"), src


async def filled(pilot) -> None:
    app = pilot.app
    while not (app.fleet.droplets and app.fleet.hosts and app.fleet.tags and app.fleet.lb):
        await pilot.pause(0.05)
    await pilot.pause()
    await pilot.pause(0.1)  # the tables widen columns for the hosts' data on their next refresh


def test_dashboard(snap_compare):
    app, _ = make_app()
    assert snap_compare(app, terminal_size=SIZE, run_before=filled)


def test_help_screen(snap_compare):
    app, _ = make_app()

    async def before(pilot):
        await filled(pilot)
        await pilot.press("question_mark")
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, run_before=before)


def test_rollback_confirmation(snap_compare):
    app, _ = make_app()

    async def before(pilot):
        await filled(pilot)
        table = pilot.app.screen.query_one("#tags", FleetTable)
        table.focus()
        while table.selected_key != "sha-0ddba11":
            await pilot.press("down")
        await pilot.press("r")
        while pilot.app.screen.__class__.__name__ != "ConfirmScreen":
            await pilot.pause(0.05)
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, run_before=before)


def test_rollout_mid(snap_compare):
    # Event 50 of the engine's stream: app-1 done, app-2 starting its new container, app-3
    # pulled and waiting its turn (the engine pulls on every host first).
    app, src = make_app(pause_after=50)

    async def before(pilot):
        await filled(pilot)
        await pilot.press("d")
        while pilot.app.screen.__class__.__name__ != "ConfirmScreen":
            await pilot.pause(0.05)
        await pilot.press("y")
        await src.paused.wait()
        await pilot.pause(1.2)  # a once-a-second tick of the elapsed times, at the held time

    assert snap_compare(app, terminal_size=SIZE, run_before=before)


def test_rollout_done(snap_compare):
    app, _ = make_app()

    async def before(pilot):
        await filled(pilot)
        await pilot.press("d")
        while pilot.app.screen.__class__.__name__ != "ConfirmScreen":
            await pilot.pause(0.05)
        await pilot.press("y")
        while getattr(pilot.app.screen, "outcome", None) is None:
            await pilot.pause(0.05)
        await pilot.pause(0.2)

    assert snap_compare(app, terminal_size=SIZE, run_before=before)


def test_rollout_halted(snap_compare):
    app, _ = make_app()

    async def before(pilot):
        await filled(pilot)
        table = pilot.app.screen.query_one("#tags", FleetTable)
        table.focus()
        while table.selected_key != "sha-deadbee":
            await pilot.press("down")
        await pilot.press("r")
        while pilot.app.screen.__class__.__name__ != "ConfirmScreen":
            await pilot.pause(0.05)
        await pilot.press("y")
        while getattr(pilot.app.screen, "outcome", None) is None:
            await pilot.pause(0.05)
        await pilot.pause(0.2)

    assert snap_compare(app, terminal_size=SIZE, run_before=before)
