"""Lines in the hosts' journal and lock that are valid JSON but not records this version can use
(missing keys, wrong types, times that are no time): skipped and reported with host and line,
never fatal for status, plan, deploy or rollback."""

from __future__ import annotations

import json

import pytest

from zdd_tui.config import Config
from zdd_tui.project.status import render_text
from zdd_tui.rollout.events import OutcomeStatus
from zdd_tui.rollout.journal import JOURNAL_FILE, check_record
from zdd_tui.rollout.lock import LOCK_FILE, LockInfo

from .fakes import FakeClock, World, fake_project

GOOD_START = {"type": "start", "rollout_id": "r1", "action": "deploy", "to_tag": "sha-aaaaaaa",
              "image_ref": "registry.example/app:sha-aaaaaaa", "operator": "ci@runner", "hosts": ["app-1", "app-2"],
              "from": {"app-1": None, "app-2": None}, "batch_size": 1, "resumes": None, "at": 100.0}
GOOD_END = {"type": "end", "rollout_id": "r1", "status": "success", "message": "", "at": 200.0,
            "fleet": {"app-1": "sha-aaaaaaa", "app-2": "sha-aaaaaaa"}}
BAD = [  # (line as written, why it is reported)
    ('{"type":"step","rollout_id":"x"}', "step record without 'host'"),
    ('{"type":"host","rollout_id":"x","host":"app-2","started":"inf"}', "host record with a bad 'started'"),
    ('{"type":"end","rollout_id":"x","at":NaN}', "end record with a bad 'at'"),
    ('{"type":"start","rollout_id":"y","hosts":"app-1","at":1}', "start record with a bad 'hosts'"),
    ('{"type":"step","rollout_id":7,"host":"app-2"}', "step record without a rollout_id"),
    ('{"type":"start","rollout_id":"z","from":{"app-1":3}}', "start record with a bad 'from'"),
    ('{"type":"start","rollout_id":"z","batch_size":"two"}', "start record with a bad 'batch_size'"),
    ('["type","step"]', "not a JSON object"),
    ('{"type":"surprise","rollout_id":"x"}', "unknown record type 'surprise'"),
    ('{"type":"step","rollout_id":"x","ho', "not valid JSON (a line torn by a crash?)"),
]


def _world() -> World:
    world = World(FakeClock(), names=("app-1", "app-2"))
    world.add_version("sha-bbbbbbb")
    lines = [json.dumps(GOOD_START)] + [line for line, _ in BAD] + [json.dumps(GOOD_END)]
    world.hosts["app-2"].files[JOURNAL_FILE] = "\n".join(lines) + "\n"
    return world


def _reported(lines: list[str]) -> None:
    """Each bad line is named with its host and line number (line 1 is the good start)."""
    text = "\n".join(lines)
    for n, (_, why) in enumerate(BAD[:3], 2):
        assert f"app-2 {JOURNAL_FILE} line {n}: {why}" in text, text


async def test_status_skips_and_reports_bad_journal_lines_and_an_unreadable_lock():
    world = _world()
    lock = {"holder": "ci@runner", "pid": 12, "started": "inf", "version": "sha-aaaaaaa", "rollout_id": "r9"}
    world.hosts["app-1"].files[LOCK_FILE] = json.dumps(lock)
    project = fake_project(world, Config(), lag=0.0)
    st = await world.clock.run(project.status())
    assert st.errors == []
    rollout = st.rollout
    assert rollout is not None
    _reported(rollout["lines"])
    assert [(s["host"], s["line"], s["why"]) for s in rollout["skipped"]] == [
        ("app-2", n, why) for n, (_, why) in enumerate(BAD, 2)]
    assert f"journal: {len(BAD)} unusable line(s) skipped:" in rollout["lines"]
    assert f"  ... and {len(BAD) - 5} more line(s)" in rollout["lines"]
    assert rollout["last"]["rollout_id"] == "r1" and rollout["last"]["status"] == "success"  # good lines count
    assert "unreadable lock file: 'started' missing or not a time" in rollout["lines"][0]
    text = render_text(st)
    assert f"app-2 {JOURNAL_FILE} line 2: step record without 'host'" in text


async def test_deploy_and_rollback_plan_and_run_past_bad_journal_lines():
    world = _world()
    project = fake_project(world, Config(), lag=0.0)
    plan = await world.clock.run(project.plan("deploy", "sha-bbbbbbb"))
    note = next(n for n in plan.notes if n.startswith("journal:"))
    assert f"{len(BAD)} unusable line(s) skipped" in note and f"app-2 {JOURNAL_FILE} line 2" in note
    outcome = await world.clock.run(project.run(plan))
    assert outcome.status is OutcomeStatus.SUCCESS and set(world.tags().values()) == {"sha-bbbbbbb"}
    choices = await world.clock.run(project.rollback_choices())
    assert "sha-aaaaaaa" in [v.tag for v in choices]
    back = await world.clock.run(project.plan("rollback", "sha-aaaaaaa"))
    assert any(f"app-2 {JOURNAL_FILE} line 2" in n for n in back.notes)


@pytest.mark.parametrize("started", ["inf", float("inf"), float("nan"), 1e300, -5, True, None])
def test_a_lock_with_a_time_that_is_no_time_still_locks_and_describes(started):
    text = json.dumps({"holder": "ci@runner", "pid": 12, "started": started, "version": "v", "rollout_id": "r"})
    info = LockInfo.parse(text)
    assert info.holder.startswith("unknown (unreadable lock file") and info.rollout_id == "?"
    assert "unreadable lock file" in info.describe()


@pytest.mark.parametrize("bad", [{"pid": "12"}, {"pid": True}, {"pid": -1}, {"holder": ["a"]}, {"version": None},
                                 {"action": 3}])
def test_a_lock_with_wrong_types_still_locks(bad):
    good = {"holder": "ci@runner", "pid": 12, "started": 1.5, "version": "v", "rollout_id": "r"}
    assert LockInfo.parse(json.dumps(good)).holder == "ci@runner"
    assert LockInfo.parse(json.dumps({**good, **bad})).holder.startswith("unknown (unreadable lock file")


def test_journal_and_lock_text_is_made_visible():
    rec = {**GOOD_END, "message": "done \x1b]0;pwned\x07"}
    assert check_record(rec) is None
    info = LockInfo.parse(json.dumps({"holder": "m\x1b[2J@ci", "pid": 1, "started": 1.0, "version": "v",
                                      "rollout_id": "r"}))
    assert info.holder == "m^[[2J@ci"
