"""The console for local-swap: the rollout view follows a local-swap stream (phases in words, each
host's active slot and what the proxy serves, the proxy's health), the confirmation names the
strategy and the hosts that get their first proxy, and the dashboard shows per host what the
proxy sends traffic to, the proxy's health and the versions kept."""

from __future__ import annotations

from dataclasses import replace

import pytest

from zdd_tui.events import LogLine
from zdd_tui.rollout.events import HealthChanged, Phase, PhaseChanged, SlotSwitched
from zdd_tui.ui.app import ZddApp
from zdd_tui.ui.screens.confirm import ConfirmScreen
from zdd_tui.ui.screens.dashboard import confirm_text
from zdd_tui.ui.screens.rollout import RolloutScreen
from zdd_tui.ui.state import Health, HostRow
from zdd_tui.ui.widgets import FleetTable, HostTable

from .fake import FakeSource
from .screentext import screen_text
from .swapfake import NEW, OLD, SwapSource, give_swap, mixed_fleet, swap_plan, swap_stream

SIZE = (120, 36)


async def filled(pilot) -> None:
    app = pilot.app
    for _ in range(300):
        if app.fleet.droplets and app.fleet.hosts and app.fleet.tags and app.fleet.lb:
            break
        await pilot.pause(0.02)
    await pilot.pause()


async def wait_for(pilot, predicate, what: str, tries: int = 300) -> None:
    for _ in range(tries):
        if predicate():
            return
        await pilot.pause(0.05)
    raise AssertionError(f"timed out waiting for {what}")


# -- the model -------------------------------------------------------------------------------------

def test_rows_follow_a_local_swap_stream():
    plan = swap_plan()
    events, mid = swap_stream(plan)
    rows = {h.name: HostRow(h.name, h.from_tag, swap=True, slot="a", serving=OLD) for h in plan.hosts}
    for ev in events[:mid]:
        row = rows.get(getattr(ev, "host", None) or "")
        if row is not None:
            row.apply(ev)
    one, two, three = rows["app-1"], rows["app-2"], rows["app-3"]
    assert (one.phase, one.slot, one.serving, one.proxy, one.switches) == (Phase.DONE, "b", NEW, Health.OK, 1)
    assert (two.phase, two.slot, two.serving, two.proxy) == (Phase.DRAINING_OLD, "b", NEW, Health.OK)
    # Not switched yet: the proxy still sends app-3's traffic to its old slot.
    assert (three.phase, three.slot, three.serving, three.switches) == (Phase.CHECKING_HEALTH, "a", OLD, 0)
    assert three.proxy is Health.UNKNOWN and three.serving_text() == f"a {OLD}"
    assert two.phase.words == "draining old" and three.phase.words == "checking health"
    for ev in events[mid:]:
        row = rows.get(getattr(ev, "host", None) or "")
        if row is not None:
            row.apply(ev)
    assert all((r.phase, r.slot, r.serving, r.switches) == (Phase.DONE, "b", NEW, 1) for r in rows.values())


def test_a_switch_or_the_proxys_health_makes_a_row_a_local_swap_row():
    # A plan that did not say local-swap (older planner) still shows what the proxy does.
    row = HostRow("app-1", OLD)
    assert not row.swap and row.serving_text() == OLD
    row.apply(SlotSwitched("app-1", "b", NEW, OLD, at=1.0))
    assert row.swap and row.serving_text() == f"b {NEW}"
    other = HostRow("app-2", OLD)
    other.apply(HealthChanged("app-2", "proxy", False, "no answer on :9180/ping", at=1.0))
    assert other.swap and other.proxy is Health.FAIL and other.direct is Health.UNKNOWN


def test_lb_evidence_as_an_event_and_as_a_log_line():
    row = HostRow("app-1", OLD)
    row.apply(HealthChanged("app-1", "lb", True, "3 checks passed", established=True, at=5.0))
    assert row.lb_text() == "✔ 3 checks passed"
    row.apply(HealthChanged("app-1", "lb", False, at=6.0))  # the advisory view, lagging: outranked
    assert row.lb_text() == "✔ 3 checks passed"
    row.apply(PhaseChanged("app-1", Phase.DRAINING, at=7.0))  # leaves the LB: the evidence is over
    row.apply(HealthChanged("app-1", "lb", False, "2 checks failed", established=True, at=8.0))
    assert row.lb is Health.DRAINING and row.lb_text() == "◐ 2 checks failed"
    # An engine that says it only in its log still fills the column.
    logged = HostRow("app-2", OLD)
    assert logged.apply(LogLine("app-2", "LB sends traffic: LB health checks passed 2x after 4.1s", at=1.0))
    assert logged.lb_text() == "✔ 2 checks passed"
    assert not logged.apply(LogLine("app-2", "pulling", at=2.0))


# -- the rollout view ------------------------------------------------------------------------------

async def test_rollout_view_shows_phases_slots_and_the_proxy_mid_swap():
    _, mid = swap_stream(swap_plan())
    src = SwapSource(pause_after=mid)
    app = ZddApp(src, poll="once")
    async with app.run_test(size=SIZE) as pilot:
        await filled(pilot)
        # Every host is behind a proxy on slot a (the dashboard's poll) before the rollout.
        assert {n: (h.active_slot, h.tag) for n, h in app.fleet.hosts.items()} == dict.fromkeys(
            ("app-1", "app-2", "app-3"), ("a", OLD))
        await pilot.press("d")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the confirmation")
        await pilot.press("y")
        await src.paused.wait()
        await pilot.pause(0.3)
        screen = app.screen
        assert isinstance(screen, RolloutScreen)
        rows = screen.rows
        assert (rows["app-1"].phase, rows["app-1"].slot, rows["app-1"].serving) == (Phase.DONE, "b", NEW)
        assert (rows["app-2"].phase, rows["app-2"].slot, rows["app-2"].proxy) == (Phase.DRAINING_OLD, "b", Health.OK)
        assert (rows["app-3"].phase, rows["app-3"].slot, rows["app-3"].serving) == (Phase.CHECKING_HEALTH, "a", OLD)
        lines = {line.split()[0]: line for line in _host_lines(screen)}
        assert "done" in lines["app-1"] and f"proxy ✔ healthy → b {NEW}" in lines["app-1"]
        assert "draining old" in lines["app-2"] and f"→ b {NEW}" in lines["app-2"]
        assert "checking health" in lines["app-3"] and f"→ a {OLD}" in lines["app-3"]
        assert "proxy ? unknown" in lines["app-3"] and "app ? unknown" in lines["app-3"]
        text = screen_text(app)
        assert f"Deploying to {NEW} (local-swap)" in text
        src.gate.set()
        await wait_for(pilot, lambda: screen.outcome is not None, "the outcome")
        assert all((r.phase, r.slot, r.serving, r.switches) == (Phase.DONE, "b", NEW, 1) for r in rows.values())
        assert "SUCCESS" in screen_text(app)


def _host_lines(screen) -> list[str]:
    table = screen.query_one("#hosts", HostTable)
    return [" ".join("".join(s.text for s in table.render_line(y)).split()) for y in range(len(table.order))]


@pytest.mark.parametrize("theme", ["zdd-ansi", "zdd-dark"])
async def test_proxy_health_reads_without_colour(theme, monkeypatch):
    if theme == "zdd-ansi":
        monkeypatch.setenv("NO_COLOR", "1")
    src = SwapSource(pause_after=1)
    app = ZddApp(src, poll="once", theme=theme)
    async with app.run_test(size=SIZE) as pilot:
        await filled(pilot)
        await pilot.press("d")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the confirmation")
        await pilot.press("y")
        await src.paused.wait()
        await pilot.pause(0.2)
        screen = app.screen
        screen.rows["app-1"].apply(HealthChanged("app-1", "proxy", False, "no answer", at=1.0))
        screen.rows["app-2"].apply(HealthChanged("app-2", "proxy", True, at=1.0))
        screen._stale |= {"app-1", "app-2"}
        screen.paint_visible()
        await pilot.pause(0.1)
        lines = {line.split()[0]: line for line in _host_lines(screen)}
        assert "proxy ✖ unhealthy" in lines["app-1"] and "proxy ✔ healthy" in lines["app-2"]
        src.gate.set()
        await wait_for(pilot, lambda: screen.outcome is not None, "the outcome")


# -- the confirmation ------------------------------------------------------------------------------

def test_confirmation_names_the_strategy_batches_and_adoptions():
    plan = swap_plan(adopt=(("app-2", "detach"), ("app-3", "fresh")))
    title, body = confirm_text(plan)
    text = body.plain
    assert title == f"Deploy to {NEW} on 3 hosts?"
    assert "How     local-swap: a proxy on each host swaps old for new locally" in text
    assert "Batches 2: the first host alone, then at most 2 at a time\n" in text
    assert ("Proxy   installed first on app-2 (taken out of the LB through DigitalOcean's API once, then the "
            "proxy); app-3 (runs nothing yet: gets the proxy and the app at once)") in text
    assert f"app-2          {OLD} → {NEW}  (first proxy: detach)" in text
    assert f"app-1          {OLD} → {NEW}\n" in text
    assert "removed before the proxy switches to it" in text
    # lb-drain says what it always said.
    _, drain = confirm_text(replace(plan, strategy="lb-drain", adopt=()))
    assert "How     lb-drain: drain each host" in drain.plain and "the LB always keeps a healthy droplet" in drain.plain
    assert "Proxy" not in drain.plain and "put back on the version it ran before" in drain.plain


async def test_the_dialog_shows_the_plans_strategy():
    src = SwapSource(adopt=(("app-3", "fresh"),))
    app = ZddApp(src, poll="once")
    async with app.run_test(size=SIZE) as pilot:
        await filled(pilot)
        await pilot.press("d")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the confirmation")
        await pilot.pause(0.1)
        text = screen_text(app)
        assert "How     local-swap" in text and "(first proxy: fresh)" in text
        await pilot.press("y")
        await wait_for(pilot, lambda: getattr(app.screen, "outcome", None) is not None, "the outcome")
        text = screen_text(app)
        assert f"Deploying to {NEW} (local-swap)" in text
        assert "First proxy on app-3 (runs nothing yet: gets the proxy and the app at once)" in text


async def test_a_hosts_words_in_a_switch_stay_text():
    # The tag and the slot are what a host's docker reported: shown, never markup or escapes.
    src = SwapSource(pause_after=1)
    app = ZddApp(src, poll="once")
    async with app.run_test(size=SIZE) as pilot:
        await filled(pilot)
        await pilot.press("d")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the confirmation")
        await pilot.press("y")
        await src.paused.wait()
        screen = app.screen
        screen.rows["app-1"].apply(SlotSwitched("app-1", "b", "[bold red]x\x1b[2J", OLD, at=1.0))
        screen._stale.add("app-1")
        screen.paint_visible()
        await pilot.pause(0.1)
        line = _host_lines(screen)[0]
        assert "→ b [bold red]x" in line and "\x1b" not in line
        src.gate.set()
        await wait_for(pilot, lambda: screen.outcome is not None, "the outcome")


# -- the dashboard ---------------------------------------------------------------------------------

async def test_dashboard_shows_what_each_proxy_serves_its_health_and_what_is_kept():
    src = FakeSource()
    sides = mixed_fleet()
    give_swap(src.world.hosts, sides)
    app = ZddApp(src, poll="once")
    async with app.run_test(size=SIZE) as pilot:
        await filled(pilot)
        await pilot.pause(0.2)
        rows = dict(app.screen.query_one("#droplets", FleetTable)._all)
        # Serving, direct health, proxy, slot, kept.
        assert rows["app-1"][4:] == (NEW, Health.OK, Health.OK, "b", "2")
        assert rows["app-2"][4:] == (OLD, Health.OK, Health.FAIL, "a", "0")
        assert rows["app-3"][4:] == (OLD, Health.OK, "—", "—", "—")  # no proxy yet: its container serves
        # One poll, one call of each per host (no API request: the hosts answer).
        assert all(s.calls == {"proxy": 1, "slot_containers": 1} for s in sides.values())
        text = screen_text(app)
        assert "✖ unhealthy" in text and "Kept" in text and "Serving" in text
        # The registry pane: NEW now serves on app-1 (what the proxy sends traffic to).
        tags = dict(app.screen.query_one("#tags", FleetTable)._all)
        assert tags[NEW][-1] == "● now on app-1"
