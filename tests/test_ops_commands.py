"""`zdd-tui logs`, `history` and `lock status|release`, run through the CLI on the engine tests'
fake world (a real Project whose hosts are tests/rollout/fakes.py's): what they print, and what
they change on the hosts (only the lock file, and only on release)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys

import pytest
from rollout.fakes import FakeClock, World, fake_project

from zdd_tui.cli import main
from zdd_tui.commands.init import project_config, render
from zdd_tui.commands.logs import SINCE_TAIL, new_lines, parse_since
from zdd_tui.config import load_config
from zdd_tui.errors import UsageError
from zdd_tui.project import Project
from zdd_tui.rollout.journal import JOURNAL_FILE
from zdd_tui.rollout.lock import LOCK_FILE, LockInfo


@pytest.fixture
def fleet(tmp_path, monkeypatch):
    """A fake fleet of two hosts that every command's Project.open returns; and the config path."""
    path = tmp_path / "zdd.yaml"
    path.write_text(render(project_config(tmp_path)))
    world = World(FakeClock(), names=("app-1", "app-2"))
    world.add_version("sha-bbbbbbb")
    project = fake_project(world, load_config(path), lag=0.0)

    async def open_(cls, config, **kw):
        return project

    monkeypatch.setattr(Project, "open", classmethod(open_))
    return world, project, str(path)


def deploy(world, project, tag: str) -> str:
    async def go():
        plan = await world.clock.run(project.plan("deploy", tag))
        await world.clock.run(project.run(plan))
        return plan.rollout_id

    return asyncio.run(go())


def dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


# -- history -----------------------------------------------------------------------------------


def test_history_merges_the_hosts_journals_newest_first(fleet, capsys):
    world, project, cfg = fleet
    first = deploy(world, project, "sha-bbbbbbb")
    # An interrupted rollout (a start and no end), known to one host only.
    world.hosts["app-2"].files[JOURNAL_FILE] += json.dumps({
        "type": "start", "rollout_id": "r-cut", "action": "rollback", "to_tag": "sha-aaaaaaa", "image_ref": "x",
        "operator": "ci@runner \x1b[2J", "hosts": ["app-2"], "from": {"app-2": "sha-bbbbbbb"}, "batch_size": 1,
        "resumes": None, "at": 4e9}) + "\n"
    assert main(["history", "--json", "--config", cfg]) == 0
    doc = json.loads(capsys.readouterr().out)
    got = [(r["rollout_id"], r["action"], r["to_tag"], r["outcome"], r["hosts"]) for r in doc["rollouts"]]
    assert got == [("r-cut", "rollback", "sha-aaaaaaa", "interrupted", ["app-2"]),
                   (first, "deploy", "sha-bbbbbbb", "success", ["app-1", "app-2"])]
    done = doc["rollouts"][1]
    assert "@" in done["operator"] and done["duration_seconds"] is not None and done["started"] > 0
    assert done["results"] == {"app-1": "done", "app-2": "done"} and done["from"]["app-1"] == "sha-aaaaaaa"
    assert doc["rollouts"][0]["operator"] == "ci@runner ^[[2J"  # the hosts' text, shown not obeyed

    assert main(["history", "-n", "1", "--config", cfg]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 and "r-cut" in out[0] and "rollback sha-aaaaaaa to app-2" in out[0]
    assert "interrupted" in out[0] and "\x1b" not in out[0]


def test_history_of_a_fresh_fleet(fleet, capsys):
    _, _, cfg = fleet
    assert main(["history", "--config", cfg]) == 0
    assert "no rollout has run on this fleet yet" in capsys.readouterr().out


# -- lock ----------------------------------------------------------------------------------------


def lock_on(world, hosts, *, pid: int, machine: str = socket.gethostname(), rollout: str = "r7") -> LockInfo:
    info = LockInfo(holder=f"ana@{machine}", pid=pid, started=1_700_000_000.0, version="sha-bbbbbbb",
                    rollout_id=rollout)
    for h in hosts:
        world.hosts[h].files[LOCK_FILE] = info.to_json()
    return info


def test_lock_status_says_holder_since_version_and_stale(fleet, capsys):
    world, _, cfg = fleet
    assert main(["lock", "status", "--config", cfg]) == 0
    assert "deploy lock: free on every host (app-1, app-2)" in capsys.readouterr().out
    lock_on(world, ["app-1", "app-2"], pid=dead_pid())
    assert main(["lock", "status", "--json", "--config", cfg]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["held"] is True and doc["free_on"] == []
    (lock,) = doc["locks"]
    assert lock["holder"].startswith("ana@") and lock["since"] == 1_700_000_000.0
    assert lock["version"] == "sha-bbbbbbb" and lock["stale"] is True and lock["hosts"] == ["app-1", "app-2"]
    assert main(["lock", "status", "--config", cfg]) == 0
    text = capsys.readouterr().out
    assert "deploy lock held on app-1, app-2" in text and "2023-11-14 22:13:20 UTC" in text
    assert "stale:   yes: its process is not running on this machine" in text


def test_lock_release_removes_only_the_lock_and_says_what_it_broke(fleet, capsys):
    world, project, cfg = fleet
    deploy(world, project, "sha-bbbbbbb")
    journals = {n: h.files[JOURNAL_FILE] for n, h in world.hosts.items()}
    lock_on(world, ["app-1", "app-2"], pid=dead_pid(), machine="laptop-9")
    assert main(["lock", "release", "--yes", "--config", cfg]) == 0
    out = capsys.readouterr().out
    assert "released the deploy lock on app-1, app-2: deploy of sha-bbbbbbb by ana@laptop-9" in out
    assert "rollout r7" in out and "only the lock file was removed" in out
    assert all(LOCK_FILE not in h.files for h in world.hosts.values())
    assert {n: h.files[JOURNAL_FILE] for n, h in world.hosts.items()} == journals  # the journal is untouched
    assert set(world.tags().values()) == {"sha-bbbbbbb"}


def test_lock_release_refuses_when_not_held_or_held_by_a_live_process(fleet, capsys):
    world, _, cfg = fleet
    assert main(["lock", "release", "--yes", "--config", cfg]) == 4
    assert "not held on any host: nothing to release" in capsys.readouterr().err
    mine = lock_on(world, ["app-1", "app-2"], pid=os.getpid())  # alive, on this machine
    assert main(["lock", "release", "--yes", "--config", cfg]) == 4
    assert "deploy lock held on app-1" in capsys.readouterr().err
    assert world.hosts["app-1"].files[LOCK_FILE] == mine.to_json()


def test_lock_release_asks_first(fleet, capsys, monkeypatch):
    world, _, cfg = fleet
    lock_on(world, ["app-1", "app-2"], pid=dead_pid())
    assert main(["lock", "release", "--config", cfg]) == 2  # no terminal to ask on, no --yes
    assert "without confirmation" in capsys.readouterr().err

    class Terminal:
        def __init__(self, answer):
            self.answer = answer

        def isatty(self):
            return True

        def readline(self):
            return self.answer

    monkeypatch.setattr(sys, "stdin", Terminal("n\n"))
    assert main(["lock", "release", "--config", cfg]) == 0
    assert "the lock was left as it is" in capsys.readouterr().err
    assert LOCK_FILE in world.hosts["app-1"].files
    monkeypatch.setattr(sys, "stdin", Terminal("y\n"))
    assert main(["lock", "release", "--config", cfg]) == 0
    assert LOCK_FILE not in world.hosts["app-1"].files


def test_release_leaves_a_lock_taken_since_by_another_rollout(fleet):
    from zdd_tui.project.lock import lock_status, release_lock

    world, project, _ = fleet
    lock_on(world, ["app-1", "app-2"], pid=dead_pid(), rollout="r-old")

    async def go():
        seen = await lock_status(project)
        lock_on(world, ["app-2"], pid=0, machine="ci", rollout="r-new")  # someone else, meanwhile
        return await release_lock(project, seen)

    removed = asyncio.run(go())
    assert list(removed) == ["app-1"]
    assert LockInfo.parse(world.hosts["app-2"].files[LOCK_FILE]).rollout_id == "r-new"


# -- logs ----------------------------------------------------------------------------------------


class GrowingLog:
    def __init__(self, lines):
        self.lines = list(lines)

    async def __call__(self, tail: int = 100):
        return self.lines[-tail:]


def test_logs_from_every_host_are_prefixed_and_shown_not_obeyed(fleet, capsys):
    world, _, cfg = fleet
    world.hosts["app-1"].logs = GrowingLog(["GET / 200", "GET /\x1b]0;pwned\x07 404"])
    world.hosts["app-2"].logs = GrowingLog(["started"])
    assert main(["logs", "--config", cfg]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "app-1 | GET / 200", "app-1 | GET /^[]0;pwned^G 404", "app-2 | started"]
    assert main(["logs", "app-2", "--config", cfg]) == 0
    assert capsys.readouterr().out.splitlines() == ["started"]
    assert main(["logs", "app-9", "--config", cfg]) == 2
    assert "no droplet named 'app-9'" in capsys.readouterr().err


def test_logs_follow_prints_only_what_is_new_until_ctrl_c(fleet, capsys, monkeypatch):
    import zdd_tui.commands.logs as logs_cmd

    world, _, cfg = fleet
    log = GrowingLog(["one", "two"])
    world.hosts["app-1"].logs = log
    monkeypatch.setattr(logs_cmd, "POLL_SECONDS", 0.05)
    loop_holder = {}

    async def feed():
        await asyncio.sleep(0.2)
        log.lines += ["three", "two"]  # a repeated line is new too
        await asyncio.sleep(0.3)
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C: handled by the command, exit 0

    async def go():
        from zdd_tui.commands.logs import run

        class Args:
            host, follow, tail, since, context, config = "app-1", True, 3, None, None, cfg

        loop_holder["feed"] = asyncio.ensure_future(feed())
        return await run(Args())

    assert asyncio.run(go()) == 0
    assert capsys.readouterr().out.splitlines() == ["one", "two", "three", "two"]


def test_new_lines_of_a_window():
    assert new_lines([], ["a"]) == (["a"], False)
    assert new_lines(["a", "b", "c"], ["b", "c", "d"]) == (["d"], False)
    assert new_lines(["a", "b"], ["a", "b"]) == ([], False)
    assert new_lines(["a", "b"], ["x", "y"]) == (["x", "y"], True)  # more than a window, or a new container


class StampedLog:
    """A host's log whose lines carry the instant they were written, as Docker's do."""

    def __init__(self, lines: list[tuple[float, str]]):
        self.lines = lines
        self.asked: list[tuple[int, float | None]] = []

    async def __call__(self, tail: int = 100, *, since: float | None = None):
        self.asked.append((tail, since))
        return [text for at, text in self.lines if since is None or at >= since][-tail:]


def test_logs_since_shows_only_what_came_since(fleet, capsys):
    import time

    world, _, cfg = fleet
    now = time.time()
    log = StampedLog([(now - 3600, "an hour ago"), (now - 900, "15 minutes ago"), (now - 60, "a minute ago")])
    world.hosts["app-1"].logs = log
    assert main(["logs", "app-1", "--since", "10m", "--config", cfg]) == 0
    assert capsys.readouterr().out.splitlines() == ["a minute ago"]
    (tail, since), = log.asked
    assert tail == SINCE_TAIL and since is not None and abs(since - (now - 600)) < 5
    assert main(["logs", "app-1", "--since", "1h30m", "-n", "1", "--config", cfg]) == 0
    assert capsys.readouterr().out.splitlines() == ["a minute ago"]
    assert log.asked[-1][0] == 1
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 1800))
    assert main(["logs", "app-1", "--since", stamp, "--config", cfg]) == 0
    assert capsys.readouterr().out.splitlines() == ["15 minutes ago", "a minute ago"]


@pytest.mark.parametrize(("text", "back"), [
    ("10m", 600), ("1h30m", 5400), ("90s", 90), ("1.5h", 5400), ("250ms", 0.25), (".5m", 30), ("2h45m10s", 9910),
])
def test_since_durations_count_back_from_now(text, back):
    assert parse_since(text, now=1_800_000_000.0) == pytest.approx(1_800_000_000.0 - back)


def test_since_times_in_docker_s_forms(monkeypatch):
    import datetime as dt
    import time

    assert parse_since("2026-01-02T15:04:05Z") == dt.datetime(2026, 1, 2, 15, 4, 5, tzinfo=dt.UTC).timestamp()
    assert parse_since("2026-01-02T15:04:05.25+01:00") == pytest.approx(
        dt.datetime(2026, 1, 2, 14, 4, 5, tzinfo=dt.UTC).timestamp() + 0.25)
    assert parse_since("2026-01-02T15:04:05.123456789-02:30") == pytest.approx(
        dt.datetime(2026, 1, 2, 17, 34, 5, tzinfo=dt.UTC).timestamp() + 0.123456789)
    # Without a zone: this machine's local time, as Docker's CLI reads it.
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        assert parse_since("2026-01-02T15:04") == dt.datetime(2026, 1, 2, 20, 4, tzinfo=dt.UTC).timestamp()
        assert parse_since("2026-07-02") == dt.datetime(2026, 7, 2, 4, 0, tzinfo=dt.UTC).timestamp()  # EDT
    finally:
        monkeypatch.undo()
        time.tzset()
    assert parse_since("1767366245") == 1767366245.0
    assert parse_since("1767366245.5") == 1767366245.5


@pytest.mark.parametrize(("text", "said", "hint"), [
    ("10 minutes", "neither a duration nor a time", "like 10m, 1h30m"),
    ("10", "a number alone is epoch seconds", "write e.g. 10m or 10s"),
    ("1d", "neither a duration nor a time", "units h, m, s, ms"),
    ("-10m", "neither a duration nor a time", "like 10m"),
    ("2026-13-01", "not a valid time (month must be in 1..12)", "2026-01-02T15:04:05Z"),
    ("2026-01-02T25:00", "not a valid time", "2026-01-02T15:04:05Z"),
    ("2026-01-02T15:04:05+25:00", "not a valid time (zone +25:00 out of range)", "2026-01-02T15:04:05Z"),
    ("2026-01-02 15:04", "neither a duration nor a time", "2026-01-02T15:04"),
    ("yesterday\x1b]0;x\x07", "--since yesterday^[]0;x^G: neither", "like 10m"),
])
def test_a_bad_since_says_what_to_write(text, said, hint):
    with pytest.raises(UsageError) as err:
        parse_since(text, now=1_800_000_000.0)
    assert said in err.value.message and hint in (err.value.hint or "")


def test_a_bad_since_exits_2_before_any_host_is_asked(fleet, capsys):
    world, _, cfg = fleet
    log = StampedLog([(0.0, "x")])
    world.hosts["app-1"].logs = log
    assert main(["logs", "--since", "5 min", "--config", cfg]) == 2
    err = capsys.readouterr().err
    assert "--since 5 min: neither a duration nor a time" in err and "like 10m, 1h30m" in err
    assert log.asked == []
