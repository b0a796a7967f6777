"""`r`: the version picker, on the fixed fake fleet (the real Project and engine on a fake world).

Deploy X over Y, then `r`, Enter, `y` must leave every host on Y (the world's hosts say so, not
the screen); the picker lists exactly what the hosts' journals hold, newest first; registry tags
that never ran are offered only below the separator.
"""

from __future__ import annotations

import re

import pytest
from textual.widgets import OptionList

from zdd_tui.project.versions import ran_versions
from zdd_tui.rollout.journal import read_records, summarize
from zdd_tui.ui.app import ZddApp
from zdd_tui.ui.screens.confirm import ConfirmScreen
from zdd_tui.ui.screens.picker import NEVER_RAN, VersionPicker
from zdd_tui.ui.widgets import FleetTable

from .fake import FakeSource
from .screentext import screen_text

SIZE = (140, 40)
OLD, NEW = "sha-b16b00b", "sha-c0ffee1"


async def filled(pilot):
    app = pilot.app
    for _ in range(300):
        if app.fleet.droplets and app.fleet.hosts and app.fleet.tags and app.fleet.versions is not None:
            break
        await pilot.pause(0.02)
    await pilot.pause()


async def wait_for(pilot, predicate, what: str, tries: int = 1500):
    for _ in range(tries):
        if predicate():
            return
        await pilot.pause(0.02)
    raise AssertionError(f"timed out waiting for {what}")


async def run_confirmed(pilot, src: FakeSource):
    app = pilot.app
    await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the confirmation")
    await pilot.press("y")
    await wait_for(pilot, lambda: getattr(app.screen, "outcome", None) is not None, "the outcome")
    await pilot.press("escape")
    await wait_for(pilot, lambda: app.rollout is None and app.screen.id == "dashboard", "the dashboard")


async def open_picker(pilot) -> VersionPicker:
    app = pilot.app
    await pilot.press("r")
    await wait_for(pilot, lambda: isinstance(app.screen, VersionPicker) and app.screen.versions is not None,
                   "the picker")
    await pilot.pause()
    assert isinstance(app.screen, VersionPicker)
    return app.screen


async def journal_order(src: FakeSource) -> list[str]:
    records = (await read_records(src.world.hosts)).records
    return [v.tag for v in ran_versions(summarize(records))]


async def test_deploy_then_r_enter_y_puts_every_host_back():
    src = FakeSource()
    app = ZddApp(src, poll="once")
    async with app.run_test(size=SIZE) as pilot:
        await filled(pilot)
        assert set(src.running.values()) == {OLD}
        await pilot.press("d")
        await run_confirmed(pilot, src)
        assert set(src.running.values()) == {NEW}

        picker = await open_picker(pilot)
        # Exactly the journals' versions, in their order (the one running now first), and the
        # one that ran before it is selected.
        assert picker.rows[: len(picker.versions.ran)] == await journal_order(src) == [NEW, OLD]
        assert picker.selected == OLD
        print(screen_text(app))
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the confirmation")
        await pilot.pause(0.1)
        text = screen_text(app)
        assert f"Roll back to {OLD} on 3 hosts?" in text
        assert all(f"app-{i}" in text for i in (1, 2, 3)) and "about" in text  # hosts, estimate
        assert "How     lb-drain: drain each host out of the load balancer" in text  # the strategy
        await run_confirmed(pilot, src)
        assert src.running == {"app-1": OLD, "app-2": OLD, "app-3": OLD}

        # And again: the previous version is now the one just left.
        picker = await open_picker(pilot)
        assert picker.rows[:2] == await journal_order(src) == [OLD, NEW]
        assert picker.selected == NEW
        await pilot.press("escape")


async def test_never_run_tags_only_below_the_separator():
    src = FakeSource()
    app = ZddApp(src, poll="once")
    async with app.run_test(size=SIZE) as pilot:
        await filled(pilot)
        await pilot.press("d")
        await run_confirmed(pilot, src)
        picker = await open_picker(pilot)
        box = picker.query_one("#picker-list", OptionList)
        ids = [box.get_option_at_index(i).id for i in range(box.option_count)]
        heading = ids.index(NEVER_RAN)
        assert box.get_option_at_index(heading).disabled
        ran = [t for t in ids[:heading] if t is not None]
        never = ids[heading + 1:]
        assert ran == [NEW, OLD]
        # `latest` is the same image as sha-c0ffee1 (it ran): not offered again.
        assert never == ["sha-deadbee", "sha-0ddba11"]
        assert not set(never) & set(ran)
        # Moving down from the last version that ran skips the heading to the first never-run tag.
        box.highlighted = ids.index(OLD)
        await pilot.press("down")
        await pilot.pause()
        assert picker.selected == "sha-deadbee"
        assert "▶ " in screen_text(app)  # the selected row carries a glyph, not colour alone
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the confirmation")
        await pilot.pause(0.1)
        assert "Roll back to sha-deadbee on 3 hosts?" in screen_text(app)
        await pilot.press("n")


async def test_r_on_a_fresh_fleet_says_no_version_ran_before():
    src = FakeSource()
    app = ZddApp(src, poll="once")
    async with app.run_test(size=SIZE) as pilot:
        await filled(pilot)
        picker = await open_picker(pilot)
        assert "No earlier version has run on this fleet" in screen_text(app)
        # The only version the (empty) journals could know of is none: everything is below the line.
        assert picker.versions.ran == []
        assert picker.selected in picker.versions.never_ran
        await pilot.press("escape")
        await pilot.pause()
        assert app.screen.id == "dashboard" and set(src.running.values()) == {OLD}


async def test_d_states_its_rule_and_o_picks_another_tag():
    src = FakeSource()
    app = ZddApp(src, poll="once")
    async with app.run_test(size=SIZE) as pilot:
        await filled(pilot)
        await pilot.press("d")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the confirmation")
        await pilot.pause(0.1)
        text = screen_text(app)
        assert f"Deploy to {NEW} on 3 hosts?" in text
        assert "Rule    git HEAD's sha tag if in the registry, else `latest`'s sha tag" in text
        assert f"{NEW} is what `latest` points at" in text
        await pilot.press("o")
        await wait_for(pilot, lambda: isinstance(app.screen, VersionPicker) and app.screen.versions is not None,
                       "the picker")
        await pilot.pause()
        picker = app.screen
        assert isinstance(picker, VersionPicker) and picker.selected == NEW
        box = picker.query_one("#picker-list", OptionList)
        box.highlighted = box.get_option_index("sha-0ddba11")
        await pilot.press("enter")
        await run_confirmed(pilot, src)
        assert set(src.running.values()) == {"sha-0ddba11"}


async def test_registry_pane_marks_what_ran_and_where():
    src = FakeSource()
    app = ZddApp(src, poll="once")
    async with app.run_test(size=SIZE) as pilot:
        await filled(pilot)
        await pilot.press("d")
        await run_confirmed(pilot, src)
        app.poller.poke("history", "hosts")
        await app.poller.run_once()
        await pilot.pause(0.1)
        table = app.screen.query_one("#tags", FleetTable)
        rows = dict(table._all)
        assert rows[NEW][-1] == rows["latest"][-1] == "● now on app-1 +2"
        assert re.fullmatch(r"\d+s ago on app-1 \+2", rows[OLD][-1])
        assert rows["sha-deadbee"][-1] == rows["sha-0ddba11"][-1] == "never"


async def test_a_finished_rollout_shows_the_engines_lb_evidence_not_the_lagging_view():
    # DigitalOcean's health view lags (here 25 s): after a host is done, its LB column says what
    # the engine established (the LB's own checks counted by the service), as the log does.
    from zdd_tui.ui.widgets import LogView

    src = FakeSource()
    src.project.cloud.lag = 25.0
    app = ZddApp(src, poll="once")
    async with app.run_test(size=SIZE) as pilot:
        await filled(pilot)
        await pilot.press("d")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the confirmation")
        await pilot.press("y")
        await wait_for(pilot, lambda: getattr(app.screen, "outcome", None) is not None, "the outcome")
        await pilot.pause(0.2)
        log = app.screen.query_one("#log", LogView).text()
        for name, row in app.screen.rows.items():
            m = re.search(rf"{name}\s+LB sends traffic: LB health checks passed (\d+)x", log)
            assert m, log
            assert row.lb_text() == f"✔ {m.group(1)} checks passed", (name, row.lb_text())
        text = screen_text(app)
        assert text.count("fleet now") == 1 and f"fleet now: {NEW} on 3" in text


@pytest.mark.parametrize("theme", ["zdd-ansi", "zdd-dark", "zdd-light"])
async def test_the_selected_row_shows_in_every_theme_and_without_colour(theme, monkeypatch):
    """zdd-ansi (also NO_COLOR's theme: colours stripped, reverse video kept) shows the cursor
    row reversed, focused or not; the coloured themes give it its own background."""
    if theme == "zdd-ansi":
        monkeypatch.setenv("NO_COLOR", "1")
    app = ZddApp(FakeSource(), poll="once", theme=theme)
    async with app.run_test(size=SIZE) as pilot:
        await filled(pilot)
        assert app.theme == theme
        for table_id in ("tags", "droplets"):
            table = app.screen.query_one(f"#{table_id}", FleetTable)
            table.focus()
            table.move_cursor(row=1)
            await pilot.pause(0.1)
            cursor = [s.style for s in table.render_line(2) if s.text.strip()]  # header, row 0, cursor
            other = [s.style for s in table.render_line(3) if s.text.strip()]
            if theme == "zdd-ansi":
                assert cursor and all(s.reverse for s in cursor), table_id
                assert not any(s.reverse for s in other)
            else:
                assert {s.bgcolor for s in cursor} != {s.bgcolor for s in other}, table_id
        if theme == "zdd-ansi":  # blurred (the droplets pane has the focus): still reversed
            tags = app.screen.query_one("#tags", FleetTable)
            assert all(s.style.reverse for s in tags.render_line(2) if s.text.strip())


async def test_logs_follow_live_pause_and_name_the_container():
    from dataclasses import replace

    from textual.widgets import RichLog

    from zdd_tui.ui.screens.logs import LogsScreen

    src = FakeSource()
    lines = ["GET / 200 1ms"]

    async def logs(tail: int = 100) -> list[str]:
        return lines[-tail:]

    src.world.hosts["app-1"].logs = logs
    app = ZddApp(src, poll="once")
    async with app.run_test(size=SIZE) as pilot:
        await filled(pilot)
        await pilot.press("l")
        await wait_for(pilot, lambda: isinstance(app.screen, LogsScreen), "the logs")
        screen = app.screen
        view = screen.query_one(RichLog)
        await wait_for(pilot, lambda: len(view.lines) == 1, "the first line")
        assert f"container {OLD} · following" in screen_text(app)
        lines.append("GET / 200 2ms")  # a new line on the host: it shows without a key
        await wait_for(pilot, lambda: len(view.lines) == 2, "the new line")
        await pilot.press("p")
        await pilot.pause(0.1)
        assert "PAUSED" in screen_text(app)
        lines.append("GET / 200 3ms")
        await pilot.pause(1.5)  # more than a refresh: paused, nothing is added
        assert len(view.lines) == 2
        await pilot.press("p")
        await wait_for(pilot, lambda: len(view.lines) == 3, "the held line")
        # Another container (a deploy): the log says so before its lines.
        host = app.fleet.hosts["app-1"]
        app.fleet.hosts["app-1"] = replace(host, container=replace(host.container, tag=NEW))
        lines.append("zdd_service sha-c0ffee1 listening")
        await wait_for(pilot, lambda: len(view.lines) == 5, "the new container's line")
        text = screen_text(app)
        assert f"the container now runs {NEW}" in text and f"container {NEW} · following" in text


async def test_sandbox_labels_its_failure_modes_and_says_so_once():
    from zdd_tui.ui.screens.dashboard import SANDBOX_HINT

    src = FakeSource(labels={"sha-deadbee": "fails health", "sha-0ddba11": "slow"})
    app = ZddApp(src, poll="once")
    async with app.run_test(size=SIZE) as pilot:
        await filled(pilot)
        await wait_for(pilot, lambda: bool(app.fleet.tag_labels), "the labels")
        await pilot.pause(0.2)
        rows = dict(app.screen.query_one("#tags", FleetTable)._all)
        assert rows["sha-deadbee"][0] == "sha-deadbee · fails health" and rows["sha-0ddba11"][0] == "sha-0ddba11 · slow"
        assert [n.message for n in app._notifications].count(SANDBOX_HINT) == 1
        app.poller.poke("labels")
        await app.poller.run_once()
        await pilot.pause(0.2)
        assert [n.message for n in app._notifications].count(SANDBOX_HINT) == 1  # once a session
        picker = await open_picker(pilot)
        assert "never ran here  · fails health" in screen_text(app) and picker.versions.labels
