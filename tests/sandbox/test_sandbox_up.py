"""`zdd-tui sandbox up` as a real process: its JSON line, `status --json` against it, SIGTERM/SIGINT
leaving no process behind (checked by PID, children included), and state kept across a restart."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from zdd_tui.sandbox.hosts import pid_alive

pytestmark = pytest.mark.slow

FAST = ["--lb-interval", "1", "--lb-timeout", "1", "--lb-unhealthy", "2", "--lb-healthy", "2"]


def children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            out.append(int(entry))
    return out


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


class Up:
    """One `sandbox up` process; kills what is left by PID if a test fails half-way."""

    def __init__(self, state_dir: Path, *extra: str):
        self.p = subprocess.Popen(
            [sys.executable, "-m", "zdd_tui", "sandbox", "up", "--json", "--state-dir", str(state_dir), *FAST, *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.info = self._line(60)
        self.kids = children(self.p.pid)

    def _line(self, timeout: float) -> dict:
        ready, _, _ = select.select([self.p.stdout], [], [], timeout)
        if not ready:
            self.kill()
            raise AssertionError("sandbox up printed nothing")
        line = self.p.stdout.readline()
        if not line:
            err = self.p.stderr.read()
            raise AssertionError(f"sandbox up exited: {err}")
        return json.loads(line)

    def stop(self, sig=signal.SIGTERM, timeout=30) -> int:
        self.p.send_signal(sig)
        rc = self.p.wait(timeout)
        self.p.stdout.close()
        self.p.stderr.close()
        return rc

    def kill(self):
        for pid in [self.p.pid, *self.kids]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.p.wait(10)


def wait_dead(pids, timeout=15.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = [p for p in pids if pid_alive(p)]
        if not alive:
            return []
        time.sleep(0.1)
    return [p for p in pids if pid_alive(p)]


def status_json(config: str) -> dict:
    r = subprocess.run(
        [sys.executable, "-m", "zdd_tui", "status", "--config", config, "--json"],
        capture_output=True, text=True, timeout=60, env={**os.environ, "DIGITALOCEAN_TOKEN": "must-not-be-used"},
    )
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_up_status_sigterm_restart(tmp_path):
    state = tmp_path / "sb"
    up = Up(state, "--hosts", "2", "--strategy", "lb-drain")
    try:
        info = up.info
        assert set(info) == {"api_url", "lb_url", "config", "hosts", "tags"}
        assert [h["name"] for h in info["hosts"]] == ["app-1", "app-2"]
        services = [k for k in up.kids if "zdd_service" in cmdline(k)]
        assert len(services) == 2 and sorted(services) == sorted(up.kids)
        # Ready means serving through the LB.
        r = httpx.get(info["lb_url"] + "/")
        assert r.status_code == 200 and r.json()["version"] == info["hosts"][0]["tag"]

        st = status_json(info["config"])
        assert [d["name"] for d in st["droplets"]] == ["app-1", "app-2"]
        assert all(d["lb_healthy"] is True for d in st["droplets"])
        assert {d["host"]["tag"] for d in st["droplets"]} == {info["hosts"][0]["tag"]}
        assert all(d["host"]["health"]["healthy"] for d in st["droplets"])
        assert st["load_balancer"]["url"] == info["lb_url"]
        assert st["load_balancer"]["health_check"]["check_interval_seconds"] == 1
        assert {t["tag"] for t in st["registry"]["tags"]} == {t["tag"] for t in info["tags"]}
        assert st["errors"] == []

        # A second sandbox on the same state dir is refused, and changes nothing.
        r = subprocess.run(
            [sys.executable, "-m", "zdd_tui", "sandbox", "up", "--json", "--state-dir", str(state)],
            capture_output=True, text=True, timeout=60,
        )
        assert r.returncode == 2 and "already running" in r.stderr and r.stdout == ""
        assert json.loads((state / "sandbox.json").read_text())["pid"] == up.p.pid

        # Change what app-2 runs through the agent; a restart must keep it.
        token = (state / "token").read_text().strip()
        agent = httpx.Client(base_url=info["api_url"] + "/sandbox/hosts/app-2",
                             headers={"Authorization": f"Bearer {token}"})
        container = json.loads(Path(state / "hosts" / "app-2" / "container.json").read_text())
        ref = container["image_ref"].rsplit(":", 1)[0] + ":latest"
        assert agent.post("/container/stop", json={"grace_seconds": 5}).status_code == 204
        assert agent.post("/container", json={"image_ref": ref}).status_code == 201
        agent.close()
        kids_before = children(up.p.pid)
    except BaseException:
        up.kill()
        raise

    assert up.stop(signal.SIGTERM) == 0
    assert wait_dead([up.p.pid, *up.kids, *kids_before]) == []

    up2 = Up(state, "--hosts", "2", "--strategy", "lb-drain")
    try:
        assert ([(h["name"], h["address"]) for h in up2.info["hosts"]]
                == [(h["name"], h["address"]) for h in info["hosts"]])
        tags = {h["name"]: h["tag"] for h in up2.info["hosts"]}
        assert tags == {"app-1": info["hosts"][0]["tag"], "app-2": "latest"}
        assert up2.info["tags"] == info["tags"]
        assert up2.info["api_url"] == info["api_url"]  # previous port reused: the zdd.yaml stays valid
        assert len(up2.kids) == 2 and not set(up2.kids) & set(up.kids)
        st = status_json(up2.info["config"])
        assert [d["id"] for d in st["droplets"]] == [d["id"] for d in status_json(info["config"])["droplets"]]
    except BaseException:
        up2.kill()
        raise
    assert up2.stop(signal.SIGINT) == 0
    assert wait_dead([up2.p.pid, *up2.kids]) == []


def test_a_killed_sandbox_takes_its_hosts_with_it(tmp_path):
    up = Up(tmp_path / "sb", "--hosts", "1")
    kids = list(up.kids)
    assert kids
    os.kill(up.p.pid, signal.SIGKILL)  # no chance to clean up: the parent-death signal must do it
    up.p.wait(10)
    left = wait_dead(kids)
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert left == []
    # The state dir's lock died with it: a new sandbox starts on it.
    up2 = Up(tmp_path / "sb", "--hosts", "1")
    try:
        assert up2.info["hosts"][0]["tag"]
    finally:
        assert up2.stop() == 0
        assert wait_dead([up2.p.pid, *up2.kids]) == []


def test_bad_arguments_are_refused_without_side_effects(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "zdd_tui", "sandbox", "up", "--state-dir", str(tmp_path / "x"), "--lb-healthy", "1"],
        capture_output=True, text=True, timeout=60,
    )
    assert r.returncode == 2 and "--lb-healthy" in r.stderr
    assert not (tmp_path / "x").exists()
    r = subprocess.run(
        [sys.executable, "-m", "zdd_tui", "sandbox", "up", "--state-dir", str(tmp_path / "y"),
         "--initial-tag", "sha-nope"],
        capture_output=True, text=True, timeout=60,
    )
    assert r.returncode == 2 and "initial tag 'sha-nope'" in r.stderr
    assert not (tmp_path / "y").exists()
    for bad in ("-1", "601", "soon"):
        r = subprocess.run(
            [sys.executable, "-m", "zdd_tui", "sandbox", "up", "--state-dir", str(tmp_path / "z"),
             "--create-delay", bad],
            capture_output=True, text=True, timeout=60,
        )
        assert r.returncode == 2 and "--create-delay" in r.stderr and "seconds 0-600" in r.stderr, r.stderr
        assert not (tmp_path / "z").exists()
