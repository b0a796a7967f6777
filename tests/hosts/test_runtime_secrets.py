"""DockerSSHRuntime with application secrets and the release command, over a real sshd with the
stand-in docker: values only in the memory-backed env file (gone once the container started),
names and keyed fingerprints in a label; the release command's output streamed, its exit code."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest

from zdd_tui.app_secrets import LABEL, fingerprint, parse_label, secret_env
from zdd_tui.cloud.models import Droplet
from zdd_tui.config import Config, DeployConfig, ServiceConfig, SSHConfig
from zdd_tui.hosts.known_hosts import KnownHosts
from zdd_tui.hosts.runtime import DockerSSHRuntime
from zdd_tui.hosts.ssh import SSHPool

pytestmark = pytest.mark.slow
KEY = bytes(range(32))
REPO = "registry.digitalocean.com/team/app"


def _state(s) -> dict:
    return json.loads((s.dir / "docker-state.json").read_text())


def _on_host(s, path: str) -> Path:
    """A path as the sshd's sessions see it (they have their own /run: a tmpfs)."""
    return Path(f"/proc/{s.pid}/root{path}")


def _droplet() -> Droplet:
    return Droplet(id=7, name="api-1", status="active", region="nyc3", size="s", public_ipv4="127.0.0.1",
                   private_ipv4="10.0.0.7")


async def test_secrets_and_release_over_ssh(docker_host, tmp_path):
    s = docker_host
    value = f"pw-{os.getpid()}-{time.monotonic_ns()}"
    cfg = Config(app="web", ssh=SSHConfig(port=s.port, state_dir=str(s.dir / "state")),
                 service=ServiceConfig(port=18080, admin_port=19090, env={"FOO": "plain"}, secrets=("DB_PASSWORD",)),
                 deploy=DeployConfig(release_timeout_seconds=30))
    pool = SSHPool(s.client_key_text, known_hosts=KnownHosts(tmp_path / "kh"), accept_new=True, port=s.port)
    rt = DockerSSHRuntime(cfg, _droplet(), pool=pool, registry_auth=False)
    rt.set_secrets(secret_env(KEY, {"DB_PASSWORD": value}))
    seen: list[str] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            for d in os.listdir("/proc"):
                if d.isdigit():
                    try:
                        if value.encode() in Path(f"/proc/{d}/cmdline").read_bytes():
                            seen.append(d)
                    except OSError:
                        pass

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    streamed: list[str] = []
    try:
        ref = f"{REPO}:sha-1234567"
        await rt.pull(ref)
        ok = await rt.release(ref, ["migrate", "--to", "head"], {"ZDD_ROLLOUT_ID": "r-1"}, on_line=streamed.append)
        bad = await rt.release(ref, ["migrate", "exit=3"])
        info = await rt.run(ref)
    finally:
        stop.set()
        watcher.join(10)
        await rt.close()
        await pool.close()
    assert seen == []
    assert ok[0] == 0 and "running migrate --to head" in ok[1] and streamed == ok[1]
    assert bad[0] == 3 and "running migrate exit=3" in bad[1]
    st = _state(s)
    assert all(value not in " ".join(call) for call in st["calls"])
    for c in st["created"]:
        # The one-off container had the app's environment and the secret, from a file gone before it ran.
        assert f"DB_PASSWORD={value}" in c["env"] and "FOO=plain" in c["env"] and "ZDD_VERSION=sha-1234567" in c["env"]
        assert c["env_file_at_start"] is False and c["fs"] == "tmpfs" and c["mode"] == "0o600"
        assert c["rm"] and c["network"] == "host" and c["labels"]["zdd.release"] == "1"
    first = st["created"][0]
    assert first["command"] == ["migrate", "--to", "head"] and "ZDD_ROLLOUT_ID=r-1" in first["env"]
    assert {c["id"] for c in st["created"]} <= set(st["removed"])
    # The app container: the value in its environment, only names and fingerprints in its label.
    container = st["containers"]["web"]
    assert f"DB_PASSWORD={value}" in container["Config"]["Env"]
    label = container["Config"]["Labels"][LABEL]
    assert value not in label and value not in json.dumps(container["Config"]["Labels"])
    parsed = parse_label(info.secrets)
    assert parsed is not None and parsed.fingerprints == {"DB_PASSWORD": fingerprint(KEY, value)}
    assert list(_on_host(s, "/run/zdd-tui-0").iterdir()) == []
