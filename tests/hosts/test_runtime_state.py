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
import tiers

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
import json, os, subprocess, sys, time
out = os.environ["FAKE_OUT"]
cfgdir = os.environ.get("DOCKER_CONFIG", "")
rec = {"argv": sys.argv[1:], "docker_config": cfgdir, "pid": os.getpid()}
if cfgdir:
    rec["dir_mode"] = oct(os.stat(cfgdir).st_mode & 0o777)
    rec["file_mode"] = oct(os.stat(os.path.join(cfgdir, "config.json")).st_mode & 0o777)
    rec["config"] = json.load(open(os.path.join(cfgdir, "config.json")))
    rec["fs"] = subprocess.run(["stat", "-f", "-c", "%T", cfgdir], capture_output=True, text=True).stdout.strip()
json.dump(rec, open(out, "w"))
if os.environ.get("FAKE_SLEEP"):
    open(out + ".ready", "w").close()
    time.sleep(30)
"""


# Runs the pull script as a child of a shell in a private mount namespace with a new tmpfs on /run
# (or, with on_disk, the test's own directory bound over /run and /dev/shm); when the script has
# ended, that shell lists what is left in the secret directory.
_WRAP = """case $1 in
  tmpfs) mount -t tmpfs -o mode=755 zdd-test-run /run || exit 99 ;;
  disk) mount --bind "$2" /run && mount --bind "$2" /dev/shm || exit 99 ;;
esac
shift 2
exec 3<&0
"$@" <&3 &
echo $! > "$PIDFILE"
wait $!
s=$?
ls -A /run/zdd-tui-0 > "$LEFT" 2>/dev/null
exit $s
"""


def _run_pull_script(tmp_path, *, sleep: bool = False, bound: int = 60, on_disk: bool = False):
    tiers.require_root("a private mount namespace for the pull script")
    tiers.require_tools("unshare", why="a private mount namespace", apt="util-linux")
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    fake = bindir / "docker"
    fake.write_text(FAKE_DOCKER)
    fake.chmod(0o755)
    out = tmp_path / "rec.json"
    disk = tmp_path / "disk"
    disk.mkdir(exist_ok=True)
    env = {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}", "FAKE_OUT": str(out), "TMPDIR": str(tmp_path),
           "PIDFILE": str(tmp_path / "pid"), "LEFT": str(tmp_path / "left")}
    if sleep:
        env["FAKE_SLEEP"] = "1"
    argv = host_argv.docker_pull("r.example/reg/app:sha-1234567", bound_seconds=bound, credentials_id="0123abcd")
    proc = subprocess.Popen(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", _WRAP, "wrap", "disk" if on_disk else "tmpfs",
         str(disk), *argv],
        stdin=subprocess.PIPE, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return proc, out


def _left(tmp_path) -> list[str]:
    return (tmp_path / "left").read_text().split()


def test_pull_script_config_is_private_in_memory_and_removed(tmp_path):
    secret = json.dumps({"auths": {"r.example": {"auth": "dXNlcjpzM2NyM3Q="}}})
    proc, out = _run_pull_script(tmp_path)
    proc.communicate(secret.encode(), timeout=20)
    assert proc.returncode == 0
    rec = json.loads(out.read_text())
    assert rec["argv"] == ["pull", "--", "r.example/reg/app:sha-1234567"]
    assert rec["config"] == json.loads(secret)
    assert rec["dir_mode"] == "0o700" and rec["file_mode"] == "0o600"
    # In memory, in root's own directory, never under /tmp (TMPDIR is ignored).
    assert rec["fs"] == "tmpfs" and rec["docker_config"].startswith("/run/zdd-tui-0/pull.")
    assert rec["docker_config"].endswith(".0123abcd")
    assert "s3cr3t" not in " ".join(rec["argv"]) and "dXNlcjpzM2NyM3Q" not in " ".join(rec["argv"])
    assert _left(tmp_path) == []  # removed on exit
    assert not list(tmp_path.glob("tmp*"))


def test_pull_script_removes_config_when_the_session_hangs_up(tmp_path):
    secret = json.dumps({"auths": {"r.example": {"auth": "eDp5"}}})
    proc, out = _run_pull_script(tmp_path, sleep=True)
    proc.stdin.write(secret.encode())
    proc.stdin.close()
    ready = Path(str(out) + ".ready")
    deadline = time.monotonic() + 10
    while not ready.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    rec = json.loads(out.read_text())
    # What sshd does when a session with a terminal drops: SIGHUP to the session's shell.
    os.kill(int((tmp_path / "pid").read_text()), signal.SIGHUP)
    try:
        proc.wait(15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert _left(tmp_path) == []
    # The trap also ended the pull itself.
    alive = _alive(rec["pid"])
    if alive:
        os.kill(rec["pid"], signal.SIGKILL)
    assert not alive


def test_pull_script_is_bounded_and_then_removes_config(tmp_path):
    secret = json.dumps({"auths": {"r.example": {"auth": "eDp5"}}})
    proc, out = _run_pull_script(tmp_path, sleep=True, bound=1)
    started = time.monotonic()
    _, err = proc.communicate(secret.encode(), timeout=30)
    assert time.monotonic() - started < 15
    assert proc.returncode == 124
    assert "docker pull did not finish within 1s" in err.decode()
    assert _left(tmp_path) == []
    assert not _alive(json.loads(out.read_text())["pid"])


def test_pull_script_refuses_a_host_without_memory_backed_storage(tmp_path):
    secret = json.dumps({"auths": {"r.example": {"auth": "eDp5"}}})
    proc, out = _run_pull_script(tmp_path, on_disk=True)
    _, err = proc.communicate(secret.encode(), timeout=20)
    assert proc.returncode == 1
    assert "no memory-backed directory" in err.decode()
    assert not out.exists()  # docker never ran
    # and nothing was written there (mount(8) keeps its own /run/mount)
    assert [p.name for p in (tmp_path / "disk").iterdir() if p.name != "mount"] == []


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
