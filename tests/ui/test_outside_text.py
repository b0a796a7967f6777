"""Text from outside in the real console: escape sequences are shown, never sent to the terminal;
markup in it stays literal text (and cannot crash the console); a crash prints one line and a
private log path, never a traceback with local variables."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from zdd_tui.rollout.interfaces import HealthProbe
from zdd_tui.ui.app import ZddApp
from zdd_tui.ui.screens.dashboard import DashboardScreen
from zdd_tui.ui.screens.logs import LogsScreen
from zdd_tui.ui.screens.rollout import RolloutScreen
from zdd_tui.ui.widgets import HostTable

from .fake import FakeSource
from .screentext import screen_text

SIZE = (160, 40)
TITLE, CLEAR = "\x1b]0;pwned\x07", "\x1b[2J"
LINK = "\x1b]8;;http://evil.example/\x1b\\click me\x1b]8;;\x1b\\"
PAYLOAD = f"GET /{TITLE} {CLEAR} {LINK} \x9b31mred"
# What must never reach the terminal: the sequences themselves, and the raw bytes that start them
# other than Textual's own (it writes CSI sequences with ESC [, never OSC, BEL or C1).
NEVER = (TITLE, CLEAR, "\x1b]", "\x07", "\x9b")


def terminal_output(app) -> str:
    """Every byte the app would write to the terminal to draw its current screen."""
    update = app.screen._compositor.render_update(full=True, screen_stack=app._background_screens)
    return update.render_segments(app.console)


def assert_nothing_raw(app) -> None:
    out = terminal_output(app)
    for raw in NEVER:
        assert raw not in out, f"{raw!r} reached the terminal"


async def until(pilot, predicate, what: str, tries: int = 300) -> None:
    for _ in range(tries):
        if predicate():
            return
        await pilot.pause(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def test_container_logs_with_escape_sequences_are_shown_not_obeyed():
    src = FakeSource()

    async def logs(tail: int = 100) -> list[str]:
        return ["service started", PAYLOAD]

    src.world.hosts["app-1"].logs = logs  # type: ignore[method-assign]
    app = ZddApp(src, poll="once")
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: bool(app.fleet.droplets), "the droplets")
        await pilot.press("l")
        await until(pilot, lambda: isinstance(app.screen, LogsScreen)
                    and len(app.screen.query_one("#logs-view").lines) >= 2, "the logs")
        await pilot.pause()
        shown = screen_text(app)
        assert "GET /^[]0;pwned^G ^[[2J ^[]8;;http://evil.example/^[\\click me" in shown
        assert "\\x9b31mred" in shown
        assert_nothing_raw(app)


async def test_a_failure_detail_with_escape_sequences_in_the_rollout_view():
    """A version whose health check answers with escape sequences: the host's row, the log and
    the outcome show them as text, and the terminal receives none."""
    src = FakeSource(n_hosts=2)
    for host in src.world.hosts.values():
        real = host.probe_health

        async def probe(real=real) -> HealthProbe:
            p = await real()
            return p if p.healthy else HealthProbe(False, 503, PAYLOAD)

        host.probe_health = probe  # type: ignore[method-assign]
    app = ZddApp(src, poll="once")
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: bool(app.fleet.droplets), "the droplets")
        app.start_rollout(await src.plan("rollback", "sha-deadbee"))  # a version that never gets healthy
        await until(pilot, lambda: isinstance(app.screen, RolloutScreen) and app.screen.outcome is not None,
                    "the outcome", tries=1200)
        await pilot.pause(0.3)
        screen = app.screen
        assert isinstance(screen, RolloutScreen) and screen.outcome is not None
        assert "^[]0;pwned^G" in screen.outcome.seen and "\x1b" not in screen.outcome.seen
        table = screen.query_one(HostTable)
        rows = ["".join(seg.text for seg in table.render_line(y)) for y in range(len(table.order))]
        assert all(not any(raw in row for raw in NEVER) for row in rows)
        assert "^[]0;pwned^G" in screen_text(app)  # the outcome, on screen
        assert_nothing_raw(app)


def _plant_lock(src: FakeSource, holder: str) -> None:
    lock = {"holder": holder, "pid": 4242, "started": 1_700_000_000.0, "version": "sha-c0ffee1",
            "rollout_id": "theirs", "action": "deploy"}
    for host in src.world.hosts.values():
        host.files["deploy.lock"] = json.dumps(lock)


@pytest.mark.parametrize("holder", ["mallory@ci [/]", "mallory@ci [@click=app.quit]click[/]"])
async def test_a_lock_holder_with_markup_stays_literal_text(holder):
    src = FakeSource()
    _plant_lock(src, holder)
    app = ZddApp(src, poll="once")
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await until(pilot, lambda: app.fleet.rollout is not None and app.fleet.droplets is not None, "the lock")
        await pilot.press("d")  # refused: someone else holds the lock, and the toast names them
        await pilot.pause(0.3)
        assert app.is_running and isinstance(app.screen, DashboardScreen)
        toasts = [str(t.render()) for t in app.screen.query("Toast")]
        assert any(f"{holder} holds the deploy lock" in t for t in toasts), toasts
        assert f"started by {holder}" in str(app.screen.query_one("#banner").render())
        await pilot.click("Toast")  # a click on the toast: no action in it runs
        await pilot.pause()
        assert app.is_running


async def test_the_console_reads_past_a_broken_journal_and_lock():
    src = FakeSource()
    lock = {"holder": "ci@runner", "pid": 7, "started": "inf", "version": "sha-c0ffee1", "rollout_id": "r9"}
    for host in src.world.hosts.values():
        host.files["deploy.lock"] = json.dumps(lock)
        host.files["journal.jsonl"] = ('{"type":"step","rollout_id":"r9"}\n'
                                       '{"type":"start","rollout_id":"r9","at":"inf"}\n')
    app = ZddApp(src, poll="once")
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await until(pilot, lambda: app.fleet.rollout is not None and app.fleet.droplets is not None, "the lock")
        await pilot.pause()
        banner = str(app.screen.query_one("#banner").render())
        assert "started by unknown (unreadable lock file: 'started' missing or not a time)" in banner
        await pilot.press("d")  # refused, naming the unreadable lock; the console goes on
        await pilot.pause(0.3)
        assert app.is_running and "rollout" not in app.fleet.errors


CRASHING_APP = """
import os, sys
sys.path[:0] = [{tests!r}, {ui!r}]
from fake import FakeSource
from zdd_tui.ui.app import ZddApp


class Crashing(FakeSource):
    def wall_now(self):
        token = os.environ["PLANTED_SECRET"]  # a local variable a traceback with locals would print
        raise RuntimeError("the tags pane cannot be painted")


app = ZddApp(Crashing(), poll="once")
app.run(headless=True, size=(100, 30))
print("return code", app.return_code)
"""


def test_a_crash_prints_one_line_and_a_private_log_never_locals(tmp_path):
    tests = Path(__file__).resolve().parents[1]
    script = tmp_path / "crashing.py"
    script.write_text(CRASHING_APP.format(tests=str(tests), ui=str(tests / "ui")))
    secret = "dop_v1_" + "5ec7e7" * 8
    state = tmp_path / "state"
    env = {**os.environ, "PLANTED_SECRET": secret, "XDG_STATE_HOME": str(state),
           "XDG_CONFIG_HOME": str(tmp_path / "config")}
    env.pop("NO_COLOR", None)
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=120)
    out = proc.stdout + proc.stderr
    assert "return code 1" in proc.stdout, out
    assert secret not in out and "locals" not in out and "Traceback" not in out and "PLANTED" not in out
    assert "zdd-tui stopped on an unexpected error (RuntimeError)." in proc.stderr
    [report] = (state / "zdd-tui" / "crashes").iterdir()
    assert f"details (the traceback, without variables) in {report}" in proc.stderr
    assert stat.S_IMODE(report.stat().st_mode) == 0o600
    assert stat.S_IMODE(report.parent.stat().st_mode) == 0o700
    text = report.read_text()
    assert "RuntimeError: the tags pane cannot be painted" in text and "wall_now" in text
    assert secret not in text
