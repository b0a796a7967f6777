"""DockerSSHRuntime's state files over a real sshd, and the pull script's credential handling."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import stat
import subprocess
import time
from pathlib import Path

import pytest

from zdd_tui.cloud.models import Droplet
from zdd_tui.config import Config, SSHConfig
from zdd_tui.hosts import argv as host_argv
from zdd_tui.hosts.known_hosts import KnownHosts
from zdd_tui.hosts.runtime import DockerSSHRuntime
from zdd_tui.hosts.ssh import SSHPool
from zdd_tui.rollout.interfaces import HostRuntime


def _droplet() -> Droplet:
    return Droplet(id=1, name="api-1", status="active", region="nyc3", size="s", public_ipv4="127.0.0.1",
                   private_ipv4=None)


@pytest.fixture
async def runtime(sshd, tmp_path):
    cfg = Config(app="web", ssh=SSHConfig(port=sshd.port, state_dir=str(sshd.dir / "state")))
    pool = SSHPool(sshd.client_key_text, known_hosts=KnownHosts(tmp_path / "kh"), accept_new=True, port=sshd.port)
    rt = DockerSSHRuntime(cfg, _droplet(), pool=pool)
    yield rt
    await rt.close()
    await pool.close()


async def test_is_a_host_runtime(runtime):
    assert isinstance(runtime, HostRuntime)
    assert runtime.state_dir.endswith("/state/web")
    assert runtime.address == "127.0.0.1"


async def test_state_files(runtime, sshd):
    content = 'holder: "me"\nweird: $(id) `x` \'q\' ✓\n'
    assert await runtime.state_read("lock") is None
    assert await runtime.state_create("lock", content) is True
    assert await runtime.state_create("lock", "other") is False
    assert await runtime.state_read("lock") == content
    d = Path(runtime.state_dir)
    assert stat.S_IMODE((d / "lock").stat().st_mode) == 0o600
    await runtime.state_write("lock", "replaced\n")
    assert await runtime.state_read("lock") == "replaced\n"
    await runtime.state_append("journal", '{"a": 1}')
    await runtime.state_append("journal", '{"b": "$(x)"}\n')
    assert await runtime.state_read("journal") == '{"a": 1}\n{"b": "$(x)"}\n'
    await runtime.state_remove("lock")
    await runtime.state_remove("lock")  # absent: no error
    assert await runtime.state_read("lock") is None
    # No temp files are left behind by create/write.
    assert sorted(p.name for p in d.iterdir()) == ["journal"]  # noqa: ASYNC240 - a local listing in a check


async def test_exclusive_create_has_one_winner(runtime):
    results = await asyncio.gather(*(runtime.state_create("lock", f"holder {i}\n") for i in range(8)))
    assert sorted(results) == [False] * 7 + [True]
    winner = results.index(True)
    assert await runtime.state_read("lock") == f"holder {winner}\n"


async def test_bad_state_name_is_refused_before_anything_runs(runtime):
    with pytest.raises(ValueError):
        await runtime.state_write("../escape", "x")


FAKE_DOCKER = r"""#!/usr/bin/env python3
import json, os, sys, time
out = os.environ["FAKE_OUT"]
cfgdir = os.environ.get("DOCKER_CONFIG", "")
rec = {"argv": sys.argv[1:], "docker_config": cfgdir, "pid": os.getpid()}
if cfgdir:
    rec["dir_mode"] = oct(os.stat(cfgdir).st_mode & 0o777)
    rec["file_mode"] = oct(os.stat(os.path.join(cfgdir, "config.json")).st_mode & 0o777)
    rec["config"] = json.load(open(os.path.join(cfgdir, "config.json")))
json.dump(rec, open(out, "w"))
if os.environ.get("FAKE_SLEEP"):
    open(out + ".ready", "w").close()
    time.sleep(30)
"""


def _run_pull_script(tmp_path, secret_config: str, *, sleep: bool = False):
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    fake = bindir / "docker"
    fake.write_text(FAKE_DOCKER)
    fake.chmod(0o755)
    out = tmp_path / "rec.json"
    env = {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}", "FAKE_OUT": str(out), "TMPDIR": str(tmp_path)}
    if sleep:
        env["FAKE_SLEEP"] = "1"
    argv = host_argv.docker_pull("r.example/reg/app:sha-1234567", with_credentials_on_stdin=True)
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return proc, out


def test_pull_script_config_is_private_and_removed(tmp_path):
    secret = json.dumps({"auths": {"r.example": {"auth": "dXNlcjpzM2NyM3Q="}}})
    proc, out = _run_pull_script(tmp_path, secret)
    proc.communicate(secret.encode(), timeout=20)
    assert proc.returncode == 0
    rec = json.loads(out.read_text())
    assert rec["argv"] == ["pull", "--", "r.example/reg/app:sha-1234567"]
    assert rec["config"] == json.loads(secret)
    assert rec["dir_mode"] == "0o700" and rec["file_mode"] == "0o600"
    assert "s3cr3t" not in " ".join(rec["argv"]) and "dXNlcjpzM2NyM3Q" not in " ".join(rec["argv"])
    assert not os.path.exists(rec["docker_config"])  # removed on exit


def test_pull_script_removes_config_when_the_session_hangs_up(tmp_path):
    secret = json.dumps({"auths": {"r.example": {"auth": "eDp5"}}})
    proc, out = _run_pull_script(tmp_path, secret, sleep=True)
    proc.stdin.write(secret.encode())
    proc.stdin.close()
    ready = Path(str(out) + ".ready")
    deadline = time.monotonic() + 10
    while not ready.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    rec = json.loads(out.read_text())
    assert os.path.isdir(rec["docker_config"])
    # What sshd does when the connection drops: SIGHUP to the session's shell.
    os.kill(proc.pid, signal.SIGHUP)
    try:
        proc.wait(15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not os.path.exists(rec["docker_config"])
    # The trap also ended the pull itself.
    alive = _alive(rec["pid"])
    if alive:
        os.kill(rec["pid"], signal.SIGKILL)
    assert not alive


def _alive(pid: int) -> bool:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return False
        if state == "Z":
            return False
        time.sleep(0.02)
    return True
