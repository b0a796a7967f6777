"""Rolling deploys in the sandbox, under load, through the real CLI.

One `zdd-tui sandbox up` (3 hosts; LB interval 3 s, timeout 3 s, unhealthy 2, healthy 3) for the
module, driven as a subprocess; every deploy is a `zdd-tui deploy/rollback` subprocess while a load
generator sends >= 200 requests/s through the LB, counting every non-2xx and connection error.
The tests run in file order and each starts from the state the previous one left (asserted).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from .childproc import ready_line
from .loadgen import LoadProcess as Load

pytestmark = pytest.mark.slow

RATE = 250  # requests/s through the LB for the whole of each rollout
# What each test demands of the load: that it ran all along, so its zero failures mean something.
# The generator shares the machine with the sandbox and the deploy; on a busy machine it sends
# fewer than RATE, which is no fault of the product (speed belongs to the benchmarks).
MIN_RATE = RATE / 4
START_TIMEOUT = 15  # the sandbox's slow version needs 8 s: it must make it


def _behaviours(info) -> dict[str, str]:
    return {t["tag"]: t["behaviour"] for t in info["tags"]}


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    state = tmp_path_factory.mktemp("sandbox")
    proc = subprocess.Popen(
        [sys.executable, "-m", "zdd_tui", "sandbox", "up", "--json", "--state-dir", str(state), "--hosts", "3",
         "--strategy", "lb-drain", "--lb-interval", "3", "--lb-timeout", "3", "--lb-unhealthy", "2",
         "--lb-healthy", "3"],
        stdout=subprocess.PIPE, stderr=open(state / "sandbox.err", "w"), text=True)
    try:
        line = ready_line(proc, 90)
        info = json.loads(line)
        info["state"] = state
        base = yaml.safe_load(Path(info["config"]).read_text())
        for batch in (1, 2):
            cfg = dict(base)
            # lb-drain's semantics under load; local-swap's are in test_localswap_sandbox.py.
            cfg["deploy"] = {**(base.get("deploy") or {}), "batch_size": batch, "strategy": "lb-drain",
                             "start_timeout_seconds": START_TIMEOUT, "margin_seconds": 3}
            p = state / f"zdd-batch{batch}.yaml"
            p.write_text(yaml.safe_dump(cfg))
            info[f"config{batch}"] = str(p)
        ok = [t["tag"] for t in info["tags"] if t["behaviour"] == "ok" and t["tag"].startswith("sha-")]
        first = info["hosts"][0]["tag"]
        info["v1"] = first
        info["v2"] = next(t for t in ok if t != first)
        for b in ("unhealthy", "crash", "slow"):
            info[b] = next(t["tag"] for t in info["tags"] if t["behaviour"] == b)
        yield info
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)



async def cli(*args: str, timeout: float = 240) -> tuple[int, str, str]:
    p = await asyncio.create_subprocess_exec(sys.executable, "-m", "zdd_tui", *args, stdout=asyncio.subprocess.PIPE,
                                             stderr=asyncio.subprocess.PIPE, stdin=asyncio.subprocess.DEVNULL)
    try:
        out, err = await asyncio.wait_for(p.communicate(), timeout)
    except TimeoutError:
        p.kill()
        await p.wait()
        raise
    return p.returncode, out.decode(), err.decode()


async def status(info) -> dict:
    """What `zdd-tui status --json` prints, gathered in-process (a CLI start costs seconds on CI)."""
    from zdd_tui.config import load_config
    from zdd_tui.project import Project

    async with await Project.open(load_config(info["config1"])) as project:
        st = await project.status()
    assert not st.errors, st.errors
    return json.loads(json.dumps(st.to_dict()))


def hosts_of(st: dict) -> dict[str, dict]:
    return {d["name"]: d for d in st["droplets"]}


async def wait_lb_all_healthy(info, seconds: float = 15) -> dict:
    """The LB's own view (monitoring metric through the API) may lag a check or two."""
    deadline = time.monotonic() + seconds
    while True:
        st = await status(info)
        if all(d["lb_healthy"] is True for d in st["droplets"]) or time.monotonic() > deadline:
            return st
        await asyncio.sleep(1)


async def deploy_under_load(info, *args: str) -> tuple[int, str, str, object]:
    load = await Load(info["lb_url"] + "/", RATE, max_seconds=300).start()
    try:
        rc, out, err = await cli(*args)
    finally:
        res = await load.stop()
    assert res.rate >= MIN_RATE, res.summary()
    return rc, out, err, res


def tags(st) -> dict[str, str]:
    return {n: h["host"]["tag"] for n, h in hosts_of(st).items()}


def started(st) -> dict[str, float]:
    return {n: h["host"]["container"]["started_at"] for n, h in hosts_of(st).items()}


async def test_nonexistent_tag_refused_before_anything_stops(sandbox):
    before = await status(sandbox)
    rc, out, err, res = await deploy_under_load(sandbox, "deploy", "--tag", "sha-0000000", "--yes",
                                                "--config", sandbox["config1"])
    assert rc == 4, (out, err)
    assert "sha-0000000 not found in the registry" in err and "nothing was changed" in err
    after = await status(sandbox)
    assert started(after) == started(before) and tags(after) == dict.fromkeys(tags(after), sandbox["v1"])
    assert res.failed == 0


@pytest.mark.parametrize("kind", ["unhealthy", "crash"])
async def test_bad_version_halts_at_first_host_and_restores(sandbox, kind):
    before = await status(sandbox)
    assert set(tags(before).values()) == {sandbox["v1"]}
    rc, out, err, res = await deploy_under_load(sandbox, "deploy", "--tag", sandbox[kind], "--yes", "--json",
                                                "--config", sandbox["config1"])
    assert rc == 3, (out[-2000:], err)
    events = [json.loads(line) for line in out.splitlines()]
    fin = events[-1]["outcome"]
    assert fin["status"] == "halted" and fin["failed_host"] == "app-1" and fin["restored"]
    assert fin["failed_step"] == "waiting-healthy"
    assert fin["fleet"] == dict.fromkeys(("app-1", "app-2", "app-3"), sandbox["v1"])
    assert "halted: app-1 failed at waiting-healthy" in err and f"app-1 runs {sandbox['v1']} again" in err
    assert "not touched: app-2, app-3" in err
    if kind == "crash":
        assert "exit code 3" in fin["seen"]
    else:
        assert f"not healthy after {START_TIMEOUT}s" in fin["seen"]
    # other hosts: never drained (same process as before); app-1 back on v1 and in the LB
    drained = {e["host"] for e in events if e["kind"] == "phase" and e["phase"] == "draining"}
    assert drained == {"app-1"}
    after = await wait_lb_all_healthy(sandbox)
    assert tags(after) == dict.fromkeys(tags(after), sandbox["v1"])
    assert started(after)["app-2"] == started(before)["app-2"] and started(after)["app-3"] == started(before)["app-3"]
    assert all(d["lb_healthy"] is True for d in after["droplets"]), after["droplets"]
    assert res.failed == 0, (res.summary(), res.first_failures)


async def test_deploy_new_version_zero_failed(sandbox):
    rc, out, err, res = await deploy_under_load(sandbox, "deploy", "--tag", sandbox["v2"], "--yes",
                                                "--config", sandbox["config1"])
    assert rc == 0, (out[-3000:], err)
    assert f"OK: {sandbox['v2']} runs on 3 host(s)" in out
    st = await wait_lb_all_healthy(sandbox)
    assert tags(st) == dict.fromkeys(tags(st), sandbox["v2"])
    assert all(d["lb_healthy"] is True for d in st["droplets"])
    assert res.failed == 0, (res.summary(), res.first_failures)
    assert res.versions.get(sandbox["v2"], 0) > 0  # the new version really served through the LB


async def test_slow_version_within_timeout_succeeds_in_batches_of_two(sandbox):
    rc, out, err, res = await deploy_under_load(sandbox, "deploy", "--tag", sandbox["slow"], "--yes", "--json",
                                                "--config", sandbox["config2"])
    assert rc == 0, (out[-3000:], err)
    events = [json.loads(line) for line in out.splitlines()]
    plan = events[0]["plan"]
    assert plan["batch_size"] == 2 and sorted(h["batch"] for h in plan["hosts"]) == [0, 0, 1]
    st = await wait_lb_all_healthy(sandbox)
    assert tags(st) == dict.fromkeys(tags(st), sandbox["slow"])
    assert res.failed == 0, (res.summary(), res.first_failures)


async def test_rollback_to_first_version_and_second_deploy_refused_naming_holder(sandbox):
    load = await Load(sandbox["lb_url"] + "/", RATE, max_seconds=300).start()
    try:
        first = asyncio.create_task(cli("rollback", sandbox["v1"], "--yes", "--config", sandbox["config1"]))
        # wait until the first holds the lock, then try a second deploy
        for _ in range(100):
            st = await status(sandbox)
            if st["rollout"] and st["rollout"]["lock"]:
                break
            await asyncio.sleep(0.3)
        holder = st["rollout"]["lock"]
        assert holder and holder["version"] == sandbox["v1"]
        rc2, out2, err2 = await cli("deploy", "--tag", sandbox["v2"], "--yes", "--config", sandbox["config1"])
        rc, out, err = await first
    finally:
        res = await load.stop()
    assert rc2 == 4, (out2, err2)
    assert "deploy lock held" in err2 and holder["holder"] in err2 and f"pid {holder['pid']}" in err2
    assert rc == 0, (out[-3000:], err)
    st = await wait_lb_all_healthy(sandbox)
    assert tags(st) == dict.fromkeys(tags(st), sandbox["v1"])
    assert res.rate >= MIN_RATE and res.failed == 0, (res.summary(), res.first_failures)


async def test_killed_deploy_shows_interrupted_and_next_deploy_resumes_cleanly(sandbox):
    load = await Load(sandbox["lb_url"] + "/", RATE, max_seconds=300).start()
    try:
        p = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "zdd_tui", "deploy", "--tag", sandbox["v2"], "--yes", "--json",
            "--config", sandbox["config1"], stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
            stdin=asyncio.subprocess.DEVNULL)
        try:
            # kill it once app-1 is done and app-2 is drained, waiting for the LB
            phases: dict[str, str] = {}
            while not (phases.get("app-1") == "done" and phases.get("app-2") == "waiting-lb-out"):
                line = await asyncio.wait_for(p.stdout.readline(), 60)
                assert line, "deploy ended before it could be killed"
                ev = json.loads(line)
                if ev["kind"] == "phase":
                    phases[ev["host"]] = ev["phase"]
        finally:
            os.kill(p.pid, signal.SIGKILL)
            await p.wait()
        st = await status(sandbox)
        ro = st["rollout"]
        assert ro["interrupted"] is not None, ro
        assert ro["interrupted"]["hosts"]["app-1"] == "done"
        assert "waiting-lb-out" in ro["interrupted"]["hosts"]["app-2"]
        assert ro["interrupted"]["hosts"]["app-3"] == "not touched"
        assert ro["lock"]["stale"] is True
        rc, text, _ = await cli("status", "--config", sandbox["config1"], timeout=60)
        assert "INTERRUPTED rollout" in text and "--break-lock" in text

        # without --break-lock: refused, naming the dead holder
        rc, out, err = await cli("deploy", "--tag", sandbox["v2"], "--yes", "--config", sandbox["config1"])
        assert rc == 4 and "stale" in err, err
        rc, out, err = await cli("deploy", "--tag", sandbox["v2"], "--yes", "--json", "--break-lock",
                                 "--config", sandbox["config1"])
    finally:
        res = await load.stop()
    assert rc == 0, (out[-3000:], err)
    plan = json.loads(out.splitlines()[0])["plan"]
    assert plan["action"] == "resume" and plan["unchanged"] == ["app-1"]
    assert plan["hosts"][0]["name"] == "app-2"
    st = await wait_lb_all_healthy(sandbox)
    assert tags(st) == dict.fromkeys(tags(st), sandbox["v2"])
    assert st["rollout"]["interrupted"] is None and st["rollout"]["lock"] is None
    assert res.rate >= MIN_RATE and res.failed == 0, (res.summary(), res.first_failures)


async def test_ctrl_c_stops_cooperatively_restoring_the_host_in_progress(sandbox):
    before = await status(sandbox)
    assert set(tags(before).values()) == {sandbox["v2"]}
    load = await Load(sandbox["lb_url"] + "/", RATE, max_seconds=300).start()
    try:
        p = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "zdd_tui", "deploy", "--tag", sandbox["v1"], "--yes", "--json",
            "--config", sandbox["config1"], stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            stdin=asyncio.subprocess.DEVNULL)
        events = []
        try:
            while True:
                line = await asyncio.wait_for(p.stdout.readline(), 60)
                assert line, "deploy ended before Ctrl-C"
                ev = json.loads(line)
                events.append(ev)
                if ev["kind"] == "phase" and ev["host"] == "app-1" and ev["phase"] == "waiting-lb-out":
                    break
            p.send_signal(signal.SIGINT)
            rest, err = await asyncio.wait_for(p.communicate(), 120)
        finally:
            if p.returncode is None:
                p.kill()
                await p.wait()
    finally:
        res = await load.stop()
    events += [json.loads(ln) for ln in rest.decode().splitlines()]
    assert p.returncode == 130, err.decode()
    fin = events[-1]["outcome"]
    assert fin["status"] == "interrupted"
    assert "stopping after the current step" in err.decode()
    app1 = [e["phase"] for e in events if e["kind"] == "phase" and e["host"] == "app-1"]
    assert app1[-2:] == ["restoring", "restored"] and "stopping" not in app1
    st = await wait_lb_all_healthy(sandbox)
    assert tags(st) == dict.fromkeys(tags(st), sandbox["v2"])
    assert started(st) == started(before)  # nothing was restarted
    assert st["rollout"]["lock"] is None and st["rollout"]["interrupted"] is None
    assert res.rate >= MIN_RATE and res.failed == 0, (res.summary(), res.first_failures)
