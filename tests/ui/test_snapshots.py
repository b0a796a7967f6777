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


async def pick(pilot, tag: str) -> None:
    """r, then the picker's row for `tag`, Enter: the rollback's confirmation."""
    from textual.widgets import OptionList

    await pilot.press("r")
    while getattr(pilot.app.screen, "versions", None) is None:
        await pilot.pause(0.05)
    box = pilot.app.screen.query_one("#picker-list", OptionList)
    box.highlighted = box.get_option_index(tag)
    await pilot.pause()
    await pilot.press("enter")
    while pilot.app.screen.__class__.__name__ != "ConfirmScreen":
        await pilot.pause(0.05)
    await pilot.pause()


async def deployed(pilot) -> None:
    """`d`, `y`, wait for the outcome, Esc: the dashboard after a deploy of sha-c0ffee1."""
    await filled(pilot)
    await pilot.press("d")
    while pilot.app.screen.__class__.__name__ != "ConfirmScreen":
        await pilot.pause(0.05)
    await pilot.press("y")
    while getattr(pilot.app.screen, "outcome", None) is None:
        await pilot.pause(0.05)
    await pilot.pause(0.2)
    await pilot.press("escape")
    while pilot.app.rollout is not None:
        await pilot.pause(0.05)
    pilot.app.poller.poke("history", "hosts", "labels")
    await pilot.app.poller.run_once()
    await pilot.pause(0.3)


def test_rollback_confirmation(snap_compare):
    app, _ = make_app()

    async def before(pilot):
        await filled(pilot)
        await pick(pilot, "sha-0ddba11")

    assert snap_compare(app, terminal_size=SIZE, run_before=before)


def test_rollback_picker(snap_compare, monkeypatch):
    # After deploying sha-c0ffee1 over sha-b16b00b: r preselects sha-b16b00b; never-run tags below.
    monkeypatch.setattr("zdd_tui.rollout.lock.operator_name", lambda: "ops@console")
    app, _ = make_app()

    async def before(pilot):
        await deployed(pilot)
        await pilot.press("r")
        while getattr(pilot.app.screen, "versions", None) is None:
            await pilot.pause(0.05)
        await pilot.pause(0.2)

    assert snap_compare(app, terminal_size=SIZE, run_before=before)


def test_registry_pane_run_markers(snap_compare, monkeypatch):
    # Which tags ran, when and where; the sandbox's label on its failure mode; the selected row
    # visible without colour (zdd-ansi, NO_COLOR: reverse video).
    monkeypatch.setenv("NO_COLOR", "1")
    src = FakeSource(labels={"sha-deadbee": "fails health"})
    app = ZddApp(src, poll="once")

    async def before(pilot):
        await deployed(pilot)
        # The sandbox hint's toast expires 12 s after the labels came: whether it still shows
        # depends on how fast this machine ran the deploy, and it is not what this test is about.
        pilot.app.clear_notifications()
        pilot.app.screen.query_one("#tags", FleetTable).focus()
        await pilot.press("down")
        await pilot.pause(0.2)

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
        await pick(pilot, "sha-deadbee")
        await pilot.press("y")
        while getattr(pilot.app.screen, "outcome", None) is None:
            await pilot.pause(0.05)
        await pilot.pause(0.2)

    assert snap_compare(app, terminal_size=SIZE, run_before=before)


def test_dashboard_local_swap(snap_compare):
    # Per host: the tag the proxy sends traffic to, its slot, the proxy's health (app-2's is
    # down), the versions kept; app-3 has no proxy yet (its single container serves).
    from .swapfake import give_swap, mixed_fleet

    app, src = make_app()
    give_swap(src.world.hosts, mixed_fleet())
    assert snap_compare(app, terminal_size=SIZE, run_before=filled)


def test_rollout_local_swap_mid(snap_compare):
    # A local-swap stream held in the middle: app-1 done (its proxy on slot b), app-2 draining
    # its old slot after the switch, app-3 checking the new slot's health (still served from a).
    from .swapfake import SwapSource, swap_plan, swap_stream

    _, mid = swap_stream(swap_plan())
    src = SwapSource(pause_after=mid)
    app = ZddApp(src, poll="once")

    async def before(pilot):
        await filled(pilot)
        await pilot.press("d")
        while pilot.app.screen.__class__.__name__ != "ConfirmScreen":
            await pilot.pause(0.05)
        await pilot.press("y")
        await src.paused.wait()
        await pilot.pause(1.2)

    assert snap_compare(app, terminal_size=SIZE, run_before=before)


# -- traffic: the dashboard's sparklines, the rollout's graph and the canary (fixed readings) -------


def traffic_dashboard(theme: str | None = None) -> ZddApp:
    """Five minutes of fixed readings: app-1 steady without 5xx, app-2 with a burst of 5xx a
    minute ago, app-3 without a proxy (no data)."""
    from .trafficfake import dashboard_history, fixed_counters, give_traffic

    src = FakeSource()
    for ev in dashboard_history():
        src.traffic_seen(ev)
    # The console's own first reading only starts a count (app-3's proxy never answers).
    give_traffic(src.world.hosts, {"app-1": fixed_counters(), "app-2": fixed_counters(), "app-3": None})
    return ZddApp(src, poll="once", theme=theme)


async def traffic_filled(pilot) -> None:
    await filled(pilot)
    while pilot.app.fleet.traffic is None:
        await pilot.pause(0.05)
    await pilot.pause(0.2)


def test_dashboard_traffic(snap_compare):
    assert snap_compare(traffic_dashboard(), terminal_size=SIZE, run_before=traffic_filled)


def test_dashboard_traffic_no_color(snap_compare, monkeypatch):
    # Without colour: the 5xx count has its ✖, app-3 says "no data".
    monkeypatch.setenv("NO_COLOR", "1")
    assert snap_compare(traffic_dashboard(), terminal_size=SIZE, run_before=traffic_filled)


def canary_rollout(bad: bool, held: bool, theme: str | None = None) -> tuple[ZddApp, object]:
    from zdd_tui.rollout.events import CanaryUpdate

    from .trafficfake import TrafficSource, canary_plan, events_until, traffic_stream

    pause = None
    if held:  # the soak half way: 5 of its 10 seconds
        events = traffic_stream(canary_plan(), bad)
        pause = events_until(events, lambda e: isinstance(e, CanaryUpdate) and e.report.elapsed_seconds >= 5)
    src = TrafficSource(bad=bad, pause_after=pause)
    return ZddApp(src, poll="once", theme=theme), src


async def deploy(pilot, src, held: bool) -> None:
    await filled(pilot)
    await pilot.press("d")
    while pilot.app.screen.__class__.__name__ != "ConfirmScreen":
        await pilot.pause(0.05)
    await pilot.press("y")
    if held:
        await src.paused.wait()
    else:
        while getattr(pilot.app.screen, "outcome", None) is None:
            await pilot.pause(0.05)
    await pilot.pause(0.4)


def test_rollout_canary_soaking(snap_compare):
    # app-1 switched at 3 s and soaks: the countdown, new vs old so far, the thresholds.
    app, src = canary_rollout(bad=False, held=True)
    assert snap_compare(app, terminal_size=SIZE, run_before=lambda pilot: deploy(pilot, src, True))


def test_rollout_canary_passed(snap_compare):
    # The whole rollout: every switch marked, no request failed; the canary's verdict.
    app, src = canary_rollout(bad=False, held=False, theme="zdd-light")
    assert snap_compare(app, terminal_size=SIZE, run_before=lambda pilot: deploy(pilot, src, False))


def test_rollout_canary_failed_ansi(snap_compare):
    # The error version: its 5xx as ✖ on the right axis, app-1's switch there and back, the verdict.
    app, src = canary_rollout(bad=True, held=False, theme="zdd-ansi")
    assert snap_compare(app, terminal_size=SIZE, run_before=lambda pilot: deploy(pilot, src, False))


def test_rollout_canary_failed_no_color(snap_compare, monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    app, src = canary_rollout(bad=True, held=False)
    assert snap_compare(app, terminal_size=SIZE, run_before=lambda pilot: deploy(pilot, src, False))
