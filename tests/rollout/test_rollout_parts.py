"""Plan arithmetic, lock, journal, headless renderer, the project layer (on the fake world)."""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import sys

import pytest

from zdd_tui.config import Config, DeployConfig
from zdd_tui.errors import EXIT_HALTED, EXIT_OK, EXIT_REFUSED, RefusedError, UsageError
from zdd_tui.headless import HeadlessRenderer
from zdd_tui.project.rollout import default_tag, exit_code_for
from zdd_tui.rollout.events import OutcomeStatus, Phase, PhaseChanged
from zdd_tui.rollout.interfaces import LBSettings
from zdd_tui.rollout.journal import Journal, read_records, summarize, versions_that_ran
from zdd_tui.rollout.listeners import Fanout, Recorder
from zdd_tui.rollout.lock import LOCK_FILE, LockHeld, LockInfo, acquire, read_locks, release
from zdd_tui.rollout.plan import HostFact, batch_seconds, build_plan, effective_batch_size

from .fakes import FakeClock, World, fake_project

S = LBSettings(interval=3, timeout=3, unhealthy_threshold=2, healthy_threshold=3)


# ---- plan ------------------------------------------------------------------------------------

@pytest.mark.parametrize("n,configured,expected", [
    (1, 1, 1), (1, 5, 1), (2, 1, 1), (2, 2, 1), (3, 2, 2), (3, 3, 2), (3, 10, 2), (10, 3, 3), (5, 0, 1),
])
def test_batch_size_keeps_a_healthy_droplet(n, configured, expected):
    assert effective_batch_size(n, configured) == expected


def test_estimate_from_lb_settings():
    # (2 + 3 - 1) x 3 s = 12 s of LB timing per batch, plus the step estimates
    assert batch_seconds(S, pull=5, stop=1, start=2) == 12 + 8
    facts = [HostFact(f"h{i}", f"10.0.0.{i}", "sha-old", True) for i in range(3)]
    p1 = build_plan(facts, "sha-new", "r/a:sha-new", S, DeployConfig(batch_size=1))
    p2 = build_plan(facts, "sha-new", "r/a:sha-new", S, DeployConfig(batch_size=2))
    assert len(p1.batches) == 3 and p1.estimated_seconds == pytest.approx(3 * batch_seconds(S))
    assert [len(b) for b in p2.batches] == [2, 1] and p2.estimated_seconds == pytest.approx(2 * batch_seconds(S))
    assert all(h.from_tag == "sha-old" for h in p1.hosts)
    assert "unhealthy 2" in p1.estimate_basis and "interval 3s" in p1.estimate_basis
    p3 = build_plan(facts, "sha-new", "r/a:sha-new", S, DeployConfig(batch_size=3))
    assert p3.batch_size == 2 and any("lowered to 2" in n for n in p3.notes)


def test_plan_puts_damaged_hosts_first_and_skips_settled_ones_on_the_tag():
    facts = [HostFact("a", "1", "sha-new", True), HostFact("b", "2", "sha-old", True),
             HostFact("c", "3", "sha-old", False), HostFact("d", "4", None, False)]
    p = build_plan(facts, "sha-new", "r:sha-new", S, DeployConfig())
    assert p.unchanged == ("a",)
    assert [h.name for h in p.hosts] == ["c", "d", "b"]
    text = p.text()
    assert "batch 1: c (sha-old -> sha-new)" in text and "d (nothing -> sha-new)" in text
    assert "unchanged (already on sha-new): a" in text


# ---- lock ------------------------------------------------------------------------------------

def _world(n=3):
    return World(FakeClock(), names=tuple(f"h{i}" for i in range(1, n + 1)))


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


async def test_lock_second_holder_refused_naming_the_first():
    w = _world()
    a = LockInfo.mine("r1", "sha-1")
    await acquire(w.hosts, a)
    with pytest.raises(LockHeld) as exc:
        await acquire(w.hosts, LockInfo.mine("r2", "sha-2"))
    msg = str(exc.value)
    assert a.holder in msg and f"pid {os.getpid()}" in msg and "sha-1" in msg and "r1" in msg
    assert exc.value.exit_code == EXIT_REFUSED
    # the loser left nothing behind; the winner's lock is intact on every host
    assert all(i.rollout_id == "r1" for i in (await read_locks(w.hosts)).values())
    await release(w.hosts, "r2")  # not ours: untouched
    assert all(i is not None for i in (await read_locks(w.hosts)).values())
    await release(w.hosts, "r1")
    assert all(i is None for i in (await read_locks(w.hosts)).values())


async def test_lock_race_exactly_one_wins_and_loser_cleans_up():
    w = _world()

    async def slow_create(orig):
        async def create(name, content):
            await asyncio.sleep(0)
            return await orig(name, content)
        return create

    for h in w.hosts.values():
        h.state_create = await slow_create(h.state_create)
    results = await asyncio.gather(*(acquire(w.hosts, LockInfo.mine(f"r{i}", "t")) for i in range(4)),
                                   return_exceptions=True)
    winners = [r for r in results if r is None]
    assert len(winners) == 1 and all(isinstance(r, LockHeld) for r in results if r is not None)
    ids = {i.rollout_id for i in (await read_locks(w.hosts)).values()}
    assert len(ids) == 1


async def test_stale_lock_needs_break_lock_and_live_one_cannot_be_broken():
    w = _world()
    stale = LockInfo(holder=LockInfo.mine("x", "t").holder, pid=_dead_pid(), started=1.0, version="sha-1",
                     rollout_id="old")
    for h in w.hosts.values():
        await h.state_create(LOCK_FILE, stale.to_json())
    assert stale.stale() is True and "[stale" in stale.describe()
    with pytest.raises(LockHeld, match="--break-lock"):
        await acquire(w.hosts, LockInfo.mine("new", "sha-2"))
    await acquire(w.hosts, LockInfo.mine("new", "sha-2"), break_lock=True)
    assert {i.rollout_id for i in (await read_locks(w.hosts)).values()} == {"new"}
    # a live holder (this very process) is never broken
    with pytest.raises(LockHeld):
        await acquire(w.hosts, LockInfo.mine("newer", "sha-3"), break_lock=True)


async def test_unreadable_or_foreign_machine_lock_still_locks():
    w = _world(1)
    await w.hosts["h1"].state_create(LOCK_FILE, "{garbage")
    with pytest.raises(LockHeld, match="unreadable"):
        await acquire(w.hosts, LockInfo.mine("r", "t"))
    foreign = LockInfo(holder="ci@other-machine", pid=1, started=1.0, version="t", rollout_id="f")
    assert foreign.stale() is None  # cannot tell from here
    w.hosts["h1"].files[LOCK_FILE] = foreign.to_json()
    await acquire(w.hosts, LockInfo.mine("r", "t"), break_lock=True)  # on purpose: allowed


# ---- journal ---------------------------------------------------------------------------------

async def test_journal_history_versions_and_torn_lines():
    w = _world(2)
    t = [100.0]
    j = Journal(w.hosts, wallclock=lambda: t[0])
    await j.start(rollout_id="r1", action="deploy", to_tag="sha-2", image_ref="r:sha-2", operator="me@x",
                  hosts=["h1", "h2"], from_tags={"h1": "sha-1", "h2": "sha-1"}, batch_size=1)
    t[0] = 108
    await j.host("r1", "h2", outcome="restored", step="waiting-healthy", from_tag="sha-1", to_tag="sha-2",
                 digest="sha256:2", seen="not healthy", started=105)
    t[0] = 110
    await j.host("r1", "h1", outcome="done", step=None, from_tag="sha-1", to_tag="sha-2", digest="sha256:2",
                 seen="", started=101)
    await j.end("r1", "halted", "halted: h2 ...", {"h1": "sha-2", "h2": "sha-1"})
    w.hosts["h2"].files["journal.jsonl"] += '{"type":"st'  # a crash mid-write
    records, bad, _ = await read_records(w.hosts)
    [r] = summarize(records)
    assert r.status == "halted" and r.operator == "me@x" and r.digest == "sha256:2"
    assert r.results["h2"].step == "waiting-healthy" and r.host_state("h2") == "restored at waiting-healthy"
    # start/end are on both hosts: merged once
    assert sum(1 for x in records if x["type"] == "start") == 1
    vs = versions_that_ran(summarize(records))
    assert [v.tag for v in vs] == ["sha-2", "sha-1"] and vs[0].hosts == ("h1",)
    # one host unreadable: the other still tells the story
    async def boom(name):
        raise OSError("host down")
    w.hosts["h1"].state_read = boom
    records, bad, _ = await read_records(w.hosts)
    assert "h1" in bad and summarize(records)[0].status == "halted"


# ---- listeners, renderer ---------------------------------------------------------------------

async def test_fanout_survives_a_broken_listener_and_awaits_async_ones():
    got = []

    def broken(e):
        raise RuntimeError("screen gone")

    async def slow(e):
        await asyncio.sleep(0)
        got.append(e)

    f = Fanout([broken, slow])
    ev = PhaseChanged(host="h", phase=Phase.DRAINING)
    await f.emit(ev)
    assert got == [ev] and len(f.errors) == 1


async def test_headless_lines_and_json_from_a_real_run():
    clock = FakeClock()
    w = World(clock)
    w.add_version("sha-bbbbbbb", "unhealthy")
    from .test_rollout_engine import engine, make

    plan, deploy = make(w, start_timeout=10)
    text, js = io.StringIO(), io.StringIO()
    eng = engine(w, clock, plan, deploy)
    eng.fanout.add(HeadlessRenderer(text))
    eng.fanout.add(HeadlessRenderer(js, json_lines=True))
    out = await clock.run(eng.run())
    assert out.status == OutcomeStatus.HALTED
    lines = text.getvalue().splitlines()
    assert lines[0].startswith(f"Plan {plan.rollout_id}: deploy sha-bbbbbbb")
    assert any("app-1" in line and "waiting for LB to stop traffic" in line for line in lines)
    assert any("LB sees: unhealthy" in line for line in lines)
    assert lines[-4].startswith("HALTED (restored): halted: app-1 failed at waiting-healthy")
    assert lines[-3:-1] == ["  failed: app-1 at waiting-healthy",
                            "  seen: not healthy after 10s: last probe 503 not ok"]
    events = [json.loads(line) for line in js.getvalue().splitlines()]
    assert events[0]["kind"] == "planned" and events[0]["plan"]["to_tag"] == "sha-bbbbbbb"
    fin = events[-1]
    assert fin["kind"] == "finished" and fin["outcome"]["status"] == "halted"
    assert fin["outcome"]["failed_step"] == "waiting-healthy" and fin["outcome"]["fleet"]["app-1"] == "sha-aaaaaaa"


# ---- the project layer on the fake world ----------------------------------------------------------

def FakeSession(world: World):
    return fake_project(world, Config(deploy=DeployConfig(start_timeout_seconds=10, margin_seconds=2)))


def _world_for_ops(clock):
    w = World(clock)
    # the ops layer builds refs from the config's image repo
    repo = Config().image_repo
    for h in w.hosts.values():
        h.container.image_ref = f"{repo}:{h.container.tag}"
    return w


async def test_operations_plan_refuses_unknown_and_malformed_tags():
    clock = FakeClock()
    w = _world_for_ops(clock)
    s = FakeSession(w)
    with pytest.raises(RefusedError, match="sha-nope not found in the registry") as exc:
        await s.plan_deploy("sha-nope")
    assert exc.value.exit_code == EXIT_REFUSED
    with pytest.raises(UsageError, match="not a valid image tag"):
        await s.plan_deploy("bad tag;rm")
    assert all(h.files == {} for h in w.hosts.values())  # nothing written anywhere


def test_default_tag_is_sha_of_short_head(tmp_path):
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    subprocess.run(["git", "-C", str(tmp_path), "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-q",
                    "--allow-empty", "-m", "x"], check=True)
    head = subprocess.run(["git", "-C", str(tmp_path), "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    assert default_tag(tmp_path) == "sha-" + head[:7]
    empty = tmp_path / "nocommit"
    subprocess.run(["git", "init", "-q", str(empty)], check=True)
    with pytest.raises(UsageError, match="not a git checkout with a commit"):
        default_tag(empty)


async def test_operations_run_state_interrupted_and_resume():
    clock = FakeClock()
    w = _world_for_ops(clock)
    w.add_version("sha-bbbbbbb")
    s = FakeSession(w)
    plan = await s.plan_deploy("sha-bbbbbbb")
    assert plan.action == "deploy" and len(plan.hosts) == 3

    # Kill "the process" while app-2 drains: the lock and an unfinished journal stay behind.
    holder = LockInfo(holder=LockInfo.mine("x", "t").holder, pid=_dead_pid(), started=1.0,
                      version="sha-bbbbbbb", rollout_id=plan.rollout_id)

    rec = Recorder()

    def kill(t, task):
        if [e.phase for e in rec.of(PhaseChanged) if e.host == "app-2"][-1:] == [Phase.WAITING_LB_OUT]:
            task.cancel()
            return True
        return False

    await clock.run(s.run(plan, [rec]), on_time=kill)
    await asyncio.sleep(0)
    for h in w.hosts.values():  # the killed process could not release it: put its lock back
        h.files[LOCK_FILE] = holder.to_json()
    st = await s.rollout_state()
    assert st.interrupted is not None and st.interrupted.rollout_id == plan.rollout_id
    text = "\n".join(st.lines())
    assert "INTERRUPTED rollout" in text and "app-1: done" in text and "app-3: not touched" in text
    assert "[stale" in text and "--break-lock" in text
    assert json.loads(json.dumps(st.to_dict()))["interrupted"]["hosts"]["app-3"] == "not touched"

    plan2 = await s.plan_deploy("sha-bbbbbbb")
    assert plan2.action == "resume" and plan2.resumes == plan.rollout_id
    assert plan2.unchanged == ("app-1",) and plan2.hosts[0].name == "app-2"
    with pytest.raises(LockHeld, match="stale"):
        await clock.run(s.run(plan2))
    w.failed = 0
    out = await clock.run(s.run(plan2, break_lock=True))
    assert out.status == OutcomeStatus.SUCCESS and w.failed == 0
    assert exit_code_for(out) == EXIT_OK
    st = await s.rollout_state()
    assert st.interrupted is None and st.lock is None
    assert st.history[0].action == "resume" and st.history[1].status == "interrupted"
    assert [v.tag for v in await s.rollback_choices()][:2] == ["sha-bbbbbbb", "sha-aaaaaaa"]

    # rollback: a rolling deploy of the earlier tag
    rb = await s.plan_rollback("sha-aaaaaaa")
    assert rb.action == "rollback" and len(rb.hosts) == 3 and rb.resumes is None
    out = await clock.run(s.run(rb))
    assert out.status == OutcomeStatus.SUCCESS and w.failed == 0
    assert w.tags() == dict.fromkeys(w.hosts, "sha-aaaaaaa")


async def test_operations_halt_exit_code():
    clock = FakeClock()
    w = _world_for_ops(clock)
    w.add_version("sha-ccccccc", "crash")
    s = FakeSession(w)
    out = await clock.run(s.run(await s.plan_deploy("sha-ccccccc")))
    assert out.status == OutcomeStatus.HALTED and exit_code_for(out) == EXIT_HALTED
    assert (await s.rollout_state()).lock is None  # released after a halt too


# ---- commands ----------------------------------------------------------------------------------

def test_deploy_without_yes_and_without_a_terminal_refuses(monkeypatch, capsys, tmp_path):
    from zdd_tui.cli import main

    monkeypatch.setattr(sys, "stdin", io.StringIO("y\n"))  # not a tty: no one to ask
    rc = main(["deploy", "--tag", "sha-abc1234", "--config", str(tmp_path / "none.yaml")])
    err = capsys.readouterr().err
    assert rc == 2 and "refusing to deploy without confirmation" in err and "--yes" in err
    rc = main(["rollback", "sha-abc1234", "--config", str(tmp_path / "none.yaml")])
    assert rc == 2 and "refusing to rollback" in capsys.readouterr().err


def test_deploy_bad_tag_is_bad_input_before_any_config_or_network(capsys, tmp_path):
    from zdd_tui.cli import main

    rc = main(["deploy", "--tag", "sha abc", "--yes", "--config", str(tmp_path / "none.yaml")])
    err = capsys.readouterr().err
    assert rc == 2 and "'sha abc' is not a valid image tag" in err


def test_engine_imports_no_textual_ssh_or_pydo():
    code = ("import sys; import zdd_tui.rollout.engine, zdd_tui.rollout.plan, zdd_tui.rollout.lock, "
            "zdd_tui.rollout.journal, zdd_tui.headless, zdd_tui.rollout.listeners; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('textual', 'asyncssh', 'pydo', 'docker')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


async def test_journal_compaction_keeps_the_last_rollouts_and_unfinished_one():
    from zdd_tui.rollout import journal as jmod

    w = _world(1)
    j = Journal(w.hosts, wallclock=lambda: 1.0)
    n = jmod.COMPACT_AT + 5
    for i in range(n):
        await j.start(rollout_id=f"r{i:04d}", action="deploy", to_tag=f"sha-{i}", image_ref="x", operator="o",
                      hosts=["h1"], from_tags={}, batch_size=1)
        if i != n - 1:  # the last one is unfinished (interrupted)
            await j.end(f"r{i:04d}", "success", "ok", {})
    await j.compact()
    rollouts = summarize((await read_records(w.hosts))[0])
    assert len(rollouts) == jmod.KEEP_ROLLOUTS
    assert rollouts[-1].rollout_id == f"r{n - 1:04d}" and not rollouts[-1].finished
    assert rollouts[0].rollout_id == f"r{n - jmod.KEEP_ROLLOUTS:04d}"
    before = w.hosts["h1"].files["journal.jsonl"]
    await j.compact()  # under the threshold now: untouched
    assert w.hosts["h1"].files["journal.jsonl"] == before
