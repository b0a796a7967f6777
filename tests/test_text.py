"""Text from outside reaches a terminal shown, never obeyed: `visible` itself, and a real
headless `deploy` whose host answers with escape sequences (its failure detail and its log)."""

from __future__ import annotations

import argparse
import json

import pytest
from rollout.fakes import World, fake_project

from zdd_tui.errors import ZddError
from zdd_tui.events import LogLine
from zdd_tui.rollout.interfaces import HealthProbe
from zdd_tui.text import visible

# A window title, a clear screen, an OSC 8 link, a C1 CSI (0x9b), a bidi override.
TITLE, CLEAR = "\x1b]0;pwned\x07", "\x1b[2J"
LINK = "\x1b]8;;http://evil.example/\x1b\\click me\x1b]8;;\x1b\\"
PAYLOAD = f"GET /{TITLE} {CLEAR} {LINK} \x9b31mred \u202etxt.exe"
RAW = ("\x1b", "\x07", "\x9b", "\u202e")


def test_visible_shows_escapes_controls_and_bidi():
    shown = visible(PAYLOAD)
    assert not any(c in shown for c in RAW)
    assert "^[]0;pwned^G" in shown and "^[[2J" in shown
    assert "^[]8;;http://evil.example/^[\\click me^[]8;;^[\\" in shown
    assert "\\x9b31mred" in shown and "<U+202E>txt.exe" in shown
    assert visible("a\x00b\x7fc\rd") == "a^@b^?c^Md"
    assert visible("col\tnext") == "col     next"  # tabs as spaces
    assert visible("one\ntwo") == "one^Jtwo"  # one value stays one line ...
    assert visible("one\ntwo", newlines=True) == "one\ntwo"  # ... unless the caller shows lines
    plain = "ünïcode ✔ 日本 [b]not markup[/b]"
    assert visible(plain) is plain  # nothing to show: the same object, no copy


def test_events_and_errors_show_outside_text_where_they_are_made():
    line = LogLine("app-1", PAYLOAD + "\nforged line")
    assert not any(c in line.line for c in RAW) and "^[[2J" in line.line and "^Jforged" in line.line
    assert not any(c in line.text() for c in RAW)
    err = ZddError(f"host said {TITLE}", f"hint {CLEAR}")
    assert "^[]0;pwned^G" in str(err) and "^[[2J" in str(err) and "\x1b" not in str(err)
    assert HealthProbe(False, 503, PAYLOAD).detail == visible(PAYLOAD)


def _world_answering(payload: str) -> World:
    from rollout.fakes import FakeClock

    world = World(FakeClock(), names=("app-1", "app-2"))
    world.add_version("sha-bbbbbbb", "unhealthy")
    for host in world.hosts.values():
        real = host.probe_health

        async def probe(real=real) -> HealthProbe:
            p = await real()
            return p if p.healthy else HealthProbe(False, 503, payload)

        async def logs(tail: int = 100) -> list[str]:
            return [payload]

        host.probe_health = probe  # type: ignore[method-assign]
        host.logs = logs  # type: ignore[method-assign]
    return world


@pytest.mark.parametrize("json_lines", [False, True])
async def test_headless_deploy_shows_a_hosts_escape_sequences(json_lines, monkeypatch, capsys):
    """`zdd-tui deploy` (its command code, on the fake fleet) of a version whose health check
    answers with escape sequences: the halt names what was seen, and no raw ESC, BEL or C1
    byte reaches stdout or stderr."""
    from zdd_tui.commands import _rollout
    from zdd_tui.config import Config
    from zdd_tui.errors import EXIT_HALTED
    from zdd_tui.project import Project

    world = _world_answering(PAYLOAD)
    project = fake_project(world, Config(), lag=0.0)

    async def open_fake(config, **kw):
        return project

    monkeypatch.setattr(Project, "open", staticmethod(open_fake))
    monkeypatch.setattr("zdd_tui.config.load_config", lambda path: Config())
    args = argparse.Namespace(yes=True, json=json_lines, break_lock=False, config="zdd.yaml", context=None)
    code = await world.clock.run(_rollout.execute(args, action="deploy", tag="sha-bbbbbbb"))
    out, err = capsys.readouterr()
    assert code == EXIT_HALTED
    for raw in RAW:
        assert raw not in out and raw not in err, repr(raw)
    if json_lines:
        events = [json.loads(line) for line in out.splitlines()]
        seen = next(e for e in events if e["kind"] == "finished")["outcome"]["seen"]
        health = [e["detail"] for e in events if e["kind"] == "health" and e["detail"]]
        assert "^[]0;pwned^G" in seen and "^[[2J" in seen and "\\x9b31m" in seen
        assert any("^[[2J" in d for d in health)
    else:
        assert "^[]0;pwned^G" in out and "^[[2J" in out and "^[]8;;http://evil.example/" in out
        assert "seen:" in out and "\\x9b31mred" in out and "<U+202E>" in out
