"""Console behaviour that needs no sandbox: themes, keys, filter, dialogs, welcome, setup, logs.

Runs on the fixed fake fleet (tests/ui/fake.py: the real Project and engine on a fake world) so
each test takes well under a second of work.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from zdd_tui.errors import UsageError
from zdd_tui.ui import keys
from zdd_tui.ui.app import ZddApp, check_theme
from zdd_tui.ui.screens.confirm import ConfirmScreen
from zdd_tui.ui.screens.dashboard import DashboardScreen
from zdd_tui.ui.screens.help import HelpScreen
from zdd_tui.ui.settings import BUNDLED_THEME_DIRS, load_settings, load_theme_specs
from zdd_tui.ui.state import Health
from zdd_tui.ui.widgets import FleetTable

from .fake import FakeSource
from .screentext import screen_text

SIZE = (120, 36)
TCSS = Path(__file__).resolve().parents[2] / "zdd_tui" / "ui" / "app.tcss"


async def filled(pilot):
    app = pilot.app
    for _ in range(200):
        if app.fleet.droplets and app.fleet.hosts and app.fleet.tags and app.fleet.lb:
            break
        await pilot.pause(0.02)
    await pilot.pause()


# -- themes ------------------------------------------------------------------------------------

def test_bundled_themes_are_data_and_load():
    specs = load_theme_specs()
    assert {"zdd-dark", "zdd-light", "zdd-ansi"} <= set(specs)
    assert any(d.is_dir() and len(list(d.glob("*.yaml"))) >= 3 for d in BUNDLED_THEME_DIRS)
    assert specs["zdd-light"].dark is False
    ansi = specs["zdd-ansi"]
    assert ansi.ansi and all(v.startswith("ansi_") for v in ansi.colors.values())


def test_user_theme_from_xdg_and_bad_theme_file(tmp_path, monkeypatch):
    themes = tmp_path / "xdg-config" / "zdd-tui" / "themes"
    themes.mkdir(parents=True)
    (themes / "mine.yaml").write_text("name: mine\nprimary: '#ff8800'\ndark: true\n")
    assert "mine" in load_theme_specs()
    check_theme("mine", load_theme_specs())
    (themes / "broken.yaml").write_text("name: broken\nprimary: '#000'\ncolour: red\n")
    with pytest.raises(UsageError, match=r"broken.yaml: unknown key\(s\) colour"):
        load_theme_specs()


def test_unknown_theme_name_is_refused_with_the_list():
    with pytest.raises(UsageError) as e:
        check_theme("solarised", load_theme_specs())
    assert "unknown theme 'solarised'" in str(e.value) and "zdd-ansi" in str(e.value)


def test_stylesheet_uses_theme_variables_only():
    css = re.sub(r"/\*.*?\*/", "", TCSS.read_text(), flags=re.S)
    assert not re.search(r"#[0-9a-fA-F]{3,8}\b", css), "hex colour in app.tcss"
    assert not re.search(r"\b(rgb|rgba|hsl|hsla)\(", css), "literal colour function in app.tcss"
    named = r"\b(red|green|blue|yellow|white|black|magenta|cyan|orange|purple|grey|gray|ansi_\w+)\b"
    for m in re.finditer(r"(color|background|border[\w-]*|tint)\s*:\s*([^;]+);", css):
        assert not re.search(named, m.group(2)), f"named colour in app.tcss: {m.group(0)}"
    assert "$success" in css and "$error" in css


async def test_t_cycles_themes_and_cells_follow():
    app = ZddApp(FakeSource(), poll="once")
    async with app.run_test(size=SIZE) as pilot:
        await filled(pilot)
        assert app.theme == "zdd-dark"
        table = app.screen.query_one("#droplets", FleetTable)
        cell_before = table.get_cell("app-1", "5")
        seen = [app.theme]
        for _ in range(len(app.zdd_themes)):
            await pilot.press("t")
            await pilot.pause()
            seen.append(app.theme)
        assert set(seen) == set(app.zdd_themes) and seen[-1] == "zdd-dark"
        await pilot.press("t")
        await pilot.pause()
        # The health cell was repainted in the new theme's success colour.
        assert table.get_cell("app-1", "5").style != cell_before.style
        assert str(table.get_cell("app-1", "5")) == "✔ healthy"


async def test_theme_option_and_no_color(monkeypatch):
    app = ZddApp(FakeSource(), poll="once", theme="zdd-light")
    async with app.run_test(size=SIZE) as pilot:
        assert app.theme == "zdd-light"
    monkeypatch.setenv("NO_COLOR", "1")
    app = ZddApp(FakeSource(), poll="once")
    async with app.run_test(size=SIZE) as pilot:
        await filled(pilot)
        assert app.theme == "zdd-ansi" and app.no_color
        assert "✔ healthy" in screen_text(app)  # health still readable without colour


# -- keys ----------------------------------------------------------------------------------------

def test_keymap_file_and_errors(tmp_path):
    cfg = tmp_path / "config.yaml"
    cfg.write_text("theme: zdd-light\nkeymap:\n  deploy: ctrl+d\n  quit: 'q, ctrl+q'\n")
    s = load_settings(cfg, keys.BINDING_IDS)
    assert s.theme == "zdd-light" and s.keymap == {"deploy": "ctrl+d", "quit": "q,ctrl+q"}
    cfg.write_text("keymap:\n  deplyo: x\n")
    with pytest.raises(UsageError, match=r"keymap\.deplyo: unknown binding id") as e:
        load_settings(cfg, keys.BINDING_IDS)
    assert "deploy" in e.value.hint
    cfg.write_text("keymap: [d]\n")
    with pytest.raises(UsageError, match="'keymap' must map binding ids"):
        load_settings(cfg, keys.BINDING_IDS)
    cfg.write_text("keymap: {deploy: d\n")
    with pytest.raises(UsageError, match=r"line \d+: not valid YAML"):
        load_settings(cfg, keys.BINDING_IDS)


async def test_remapped_key_works_and_old_one_does_not(tmp_path):
    cfg = tmp_path / "config.yaml"
    cfg.write_text("keymap:\n  deploy: x\n")
    app = ZddApp(FakeSource(), poll="once", settings=load_settings(cfg, keys.BINDING_IDS))
    async with app.run_test(size=SIZE) as pilot:
        await filled(pilot)
        await pilot.press("d")
        await pilot.pause(0.3)
        assert isinstance(app.screen, DashboardScreen)
        await pilot.press("x")
        for _ in range(50):
            if isinstance(app.screen, ConfirmScreen):
                break
            await pilot.pause(0.02)
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("escape")
        await pilot.pause()
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        line = next(ln for ln in screen_text(app).splitlines() if "Deploy git HEAD" in ln)
        assert re.search(r"\bx\b", line) and "deploy" in line


async def test_every_action_is_in_the_footer_help_and_palette():
    app = ZddApp(FakeSource(), poll="once")
    async with app.run_test(size=(160, 40)) as pilot:
        await filled(pilot)
        footer = screen_text(app).splitlines()[-1]
        for k in keys.KEYS:
            if k.show and k.scope in ("app", "dashboard"):
                assert k.description in footer, k.id
        titles = {c.title for c in app.get_system_commands(app.screen)}
        for k in keys.KEYS:
            if k.scope in ("app", "dashboard"):
                assert k.description in titles, k.id
        assert {"Theme: zdd-dark", "Theme: zdd-light", "Theme: zdd-ansi"} <= titles
        await pilot.press("question_mark")
        await pilot.pause()
        help_text = screen_text(app)
        for k in keys.KEYS:
            assert k.help[:30] in help_text, k.id


async def test_dialogs_pause_polling_and_the_one_help_screen_follows_the_theme():
    app = ZddApp(FakeSource(), poll="once")
    async with app.run_test(size=SIZE) as pilot:
        await filled(pilot)
        assert app.poller is not None and not app.poller.paused
        await pilot.press("question_mark")
        await pilot.pause()
        first = app.screen
        assert isinstance(first, HelpScreen) and app.poller.paused
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, DashboardScreen) and not app.poller.paused
        await pilot.press("question_mark")
        await pilot.pause()
        assert app.screen is first and app.poller.paused  # the same help screen, reused
        await pilot.press("escape")
        await pilot.pause()
        # A confirmation pauses too.
        await pilot.press("d")
        for _ in range(50):
            if isinstance(app.screen, ConfirmScreen):
                break
            await pilot.pause(0.02)
        assert isinstance(app.screen, ConfirmScreen) and app.poller.paused
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, DashboardScreen) and not app.poller.paused
        # A theme switch while help is closed: the next opening draws the keys in its colours.
        await pilot.press("t")
        await pilot.pause()
        await pilot.press("question_mark")
        await pilot.pause()
        keys_text = app.screen.query_one("#help-keys").content  # the Rich Text we drew
        accent = app.get_css_variables()["accent"].lower()
        colours = {sp.style.color.triplet.hex.lower() for sp in keys_text.spans
                   if not isinstance(sp.style, str) and sp.style.color}
        assert accent in colours, (accent, colours)
        # And while it is open (keys are the dialog's then; the palette or a signal may switch it).
        assert app.theme == "zdd-light"
        app.theme = "zdd-dark"
        await pilot.pause()
        keys_text = app.screen.query_one("#help-keys").content
        accent = app.get_css_variables()["accent"].lower()
        colours = {sp.style.color.triplet.hex.lower() for sp in keys_text.spans
                   if not isinstance(sp.style, str) and sp.style.color}
        assert isinstance(app.screen, HelpScreen) and accent in colours, (accent, colours)


async def test_rollout_log_follows_the_end_keeps_a_bounded_tail_and_stays_where_scrolled():
    from textual.app import App

    from zdd_tui.ui.widgets import LogView

    class LogApp(App):
        def compose(self):
            yield LogView(500, id="log")

    def last_visible(view) -> str:
        rows = view.scrollable_content_region.height  # less the horizontal scrollbar
        return "".join(seg.text for seg in view.render_line(rows - 1)).strip()

    app = LogApp()
    async with app.run_test(size=(60, 12)) as pilot:
        view = app.query_one(LogView)
        view.focus()
        view.write_entries((f"{i:04d} ", f"line {i}", None) for i in range(300))
        await pilot.pause()
        assert last_visible(view) == "0299 line 299"  # follows the end
        view.write_entries((f"{i:04d} ", f"line {i}", "error" if i % 2 else None) for i in range(300, 900))
        await pilot.pause()
        assert len(view.entries) == 500 and view.entries[0][1] == "line 400"  # a bounded tail
        assert last_visible(view) == "0899 line 899"
        await pilot.press("pageup")
        await pilot.pause()
        shown = last_visible(view)
        assert shown != "0899 line 899"
        view.write_entries([("0900 ", "line 900", None)])
        await pilot.pause()
        assert last_visible(view) == shown  # scrolled up: new lines do not move the view
        await pilot.press("end")
        await pilot.pause()
        assert last_visible(view) == "0900 line 900"


# -- dashboard behaviour --------------------------------------------------------------------------

async def test_filter_focused_table_then_escape():
    app = ZddApp(FakeSource(n_hosts=12), poll="once")
    async with app.run_test(size=SIZE) as pilot:
        await filled(pilot)
        table = app.screen.query_one("#droplets", FleetTable)
        assert table.row_count == 12
        await pilot.press("slash")
        await pilot.press(*"app-1")  # the Input has focus now: letters are text, not bindings
        await pilot.pause()
        assert sorted(table._order) == ["app-1", "app-10", "app-11", "app-12"]
        assert isinstance(app.screen, DashboardScreen)  # "d" in the text did not deploy
        await pilot.press("escape")
        await pilot.pause()
        assert table.row_count == 12 and app.focused is table


async def test_fleet_data_before_the_panes_exist_is_kept_and_painted_on_mount():
    """Poll results can reach a dashboard whose panes are not mounted yet (it was just pushed):
    they used to crash the console (NoMatches: No nodes match '#droplets') or be lost. They are
    kept and painted once the panes exist."""
    src = FakeSource()
    app = ZddApp(src, poll="once")
    async with app.run_test(size=SIZE) as pilot:
        await filled(pilot)
        await app.pop_screen()  # a dashboard again, as when the welcome screen makes way for it
        fresh = DashboardScreen(sandbox=True)
        app.push_screen(fresh)
        for task in ("droplets", "hosts", "tags", "lb"):
            fresh.fleet_changed(task)  # at once: the screen's panes do not exist yet
        await pilot.pause(0.3)
        assert app.screen is fresh
        assert fresh.query_one("#droplets", FleetTable).row_count == 3
        assert fresh.query_one("#tags", FleetTable).row_count == 5
        assert "sha-b16b00b" in screen_text(app)
        # A pane that is gone (being replaced) when data arrives: kept for the next paint.
        await fresh.query_one("#droplets", FleetTable).remove()
        fresh.fleet_changed("hosts")
        await pilot.pause()
        assert "droplets" in fresh._unpainted


async def test_only_changed_cells_are_repainted():
    src = FakeSource(n_hosts=20)
    app = ZddApp(src, poll="once")
    async with app.run_test(size=SIZE) as pilot:
        await filled(pilot)
        table = app.screen.query_one("#droplets", FleetTable)
        start = table.cell_updates
        src.drain("app-7")
        app.fleet.apply("hosts", await src.hosts(), None)
        app.dashboard.fleet_changed("hosts")
        await pilot.pause()
        assert table.cell_updates - start == 1  # one health cell of one row
        assert table._shown["app-7"][5] is Health.DRAINING
        assert "◐ draining" in screen_text(app)


async def test_dialog_pauses_polling():
    app = ZddApp(FakeSource(), poll="live")
    async with app.run_test(size=SIZE) as pilot:
        await filled(pilot)
        await pilot.press("question_mark")
        await pilot.pause()
        assert app.poller.paused
        await pilot.press("escape")
        for _ in range(50):
            if not app.poller.paused:
                break
            await pilot.pause(0.02)
        assert not app.poller.paused


async def test_deploy_cancel_on_fake_changes_nothing():
    src = FakeSource()
    app = ZddApp(src, poll="once")
    async with app.run_test(size=SIZE) as pilot:
        await filled(pilot)
        await pilot.press("d")
        for _ in range(50):
            if isinstance(app.screen, ConfirmScreen):
                break
            await pilot.pause(0.02)
        assert "Deploy to sha-c0ffee1 on 3 hosts?" in screen_text(app)
        await pilot.press("n")
        await pilot.pause(0.2)
    assert set(src.running.values()) == {"sha-b16b00b"} and src.events_sent == 0


async def test_logs_screen_shows_the_selected_droplet():
    app = ZddApp(FakeSource(), poll="once")
    async with app.run_test(size=SIZE) as pilot:
        await filled(pilot)
        await pilot.press("down", "l")
        await pilot.pause(0.3)
        text = screen_text(app)
        assert "logs of app-2" in text and "zdd_service sha-b16b00b listening" in text and "SANDBOX" in text
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, DashboardScreen)


# -- first run and setup --------------------------------------------------------------------------

async def test_welcome_screen_offers_both_ways_and_sandbox_opens_dashboard():
    opened = []

    async def open_sandbox():
        src = FakeSource()
        opened.append(src)
        return src

    app = ZddApp(open_sandbox=open_sandbox, first_run=True, poll="once")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        text = screen_text(app)
        assert "Connect DigitalOcean" in text and "Try the local sandbox" in text
        await pilot.click("#sandbox")
        for _ in range(100):
            if app.fleet.droplets:
                break
            await pilot.pause(0.02)
        assert opened and isinstance(app.screen, DashboardScreen)
        assert "SANDBOX" in screen_text(app)


async def test_setup_screen_token_is_masked_and_keys_still_work():
    app = ZddApp(FakeSource(), poll="once")
    async with app.run_test(size=SIZE) as pilot:
        await filled(pilot)
        await pilot.press("s")
        await pilot.pause()
        assert app.screen.id == "setup"
        token = app.screen.query_one("#token")
        assert token.password is True and app.focused is not token  # keys are not swallowed
        await pilot.click("#token")
        await pilot.press(*"dop_v1_abc")
        await pilot.pause()
        assert "dop_v1_abc" not in screen_text(app)  # masked on screen
        await pilot.press("escape")  # leaves the Input's focus...
        await pilot.pause()
        if app.screen.id == "setup":
            await pilot.press("escape")  # ...and then the screen
            await pilot.pause()
        assert isinstance(app.screen, DashboardScreen)
