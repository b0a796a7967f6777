"""The setup wizard's SSH bootstrap step end to end: droplets from the sandbox DO API (an
"external" droplet at 127.0.0.1), a real sshd with the stand-in docker, the key from the
credential store (env), and host-key pinning only with --accept-new-host-keys."""

from __future__ import annotations

import pytest

from zdd_tui.config import Config, DigitalOceanConfig, DropletsConfig, ServiceConfig, SSHConfig
from zdd_tui.errors import ZddError
from zdd_tui.events import HostReport
from zdd_tui.hosts.known_hosts import KnownHosts
from zdd_tui.setup.events import StepError
from zdd_tui.setup.steps import Setup

TOKEN = "bootstrap-test-token"


@pytest.fixture
async def do_api(monkeypatch):
    from zdd_tui.sandbox.api import SandboxAPI

    api = SandboxAPI(None, TOKEN, activation_delay=0.0)
    await api.start()
    monkeypatch.setenv("ZDD_API_URL", api.url)  # the operator lets a token typed in go to this API
    yield api
    await api.stop()


async def test_bootstrap_step_pins_only_when_allowed(docker_host, do_api, tmp_path, monkeypatch, quiet_ports):
    s = docker_host
    service_port, admin_port = quiet_ports(2)
    monkeypatch.setenv("ZDD_SSH_PRIVATE_KEY", s.client_key_text)
    d = do_api.state.create_droplet("edge-1", tags=["edge"], public_ipv4="127.0.0.1", sandbox={"external": True})
    await do_api.notify_created(d)
    cfg = Config(
        app="edge",
        context="boot",
        runtime="ssh",
        digitalocean=DigitalOceanConfig(api_url=do_api.url),
        droplets=DropletsConfig(tag="edge", names=("edge-1",)),
        service=ServiceConfig(port=service_port, admin_port=admin_port),
        ssh=SSHConfig(port=s.port, state_dir=str(s.dir / "zdd-state")),
    )
    kh = tmp_path / "known_hosts"

    events: list = []
    async with Setup(cfg, token=TOKEN, emit=events.append, pool_options={"known_hosts": str(kh)}) as setup:
        p = await setup.preview("bootstrap")
        assert p.applies and "edge-1 (127.0.0.1)" in p.creates[0]
        with pytest.raises(ZddError, match="bootstrap failed on edge-1"):
            await setup.apply("bootstrap")
    rep = next(e for e in events if isinstance(e, HostReport))
    assert not rep.ok and "not pinned yet" in rep.checks["ssh"] and s.host_fingerprint in rep.checks["ssh"]
    assert [e.step for e in events if isinstance(e, StepError)] == ["bootstrap"]
    assert KnownHosts(kh).keys_for("127.0.0.1", s.port) == []
    assert not (s.dir / "zdd-state").exists()

    events.clear()
    async with Setup(cfg, token=TOKEN, emit=events.append, accept_new_host_keys=True,
                     pool_options={"known_hosts": str(kh)}) as setup:
        done = await setup.apply("bootstrap")
    assert done.status == "exists" and "edge-1" in done.detail
    rep = next(e for e in events if isinstance(e, HostReport))
    assert rep.ok and rep.checks["host key"] == f"pinned {s.host_fingerprint}"
    assert [k.get_fingerprint("sha256") for k in KnownHosts(kh).keys_for("127.0.0.1", s.port)] == [s.host_fingerprint]
    assert (s.dir / "zdd-state" / "edge").is_dir()
