"""The setup wizard's SSH bootstrap step end to end: droplets from the sandbox DO API (an
"external" droplet at 127.0.0.1), a real sshd with the stand-in docker, the key from the
credential store (env), and host-key pinning only with --accept-new-host-keys."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from zdd_tui.config import Config, DeployConfig, DigitalOceanConfig, DropletsConfig, ServiceConfig, SSHConfig
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
        deploy=DeployConfig(strategy="lb-drain"),  # the proxy's start is tested in test_runtime_swap
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


def _new_droplet_host(sshd_factory, cloud_init_seconds: float | None):
    """An sshd whose sessions see a droplet on first boot: no Docker yet, apt-get and systemctl
    stand-ins that log their calls (apt-get install brings the stand-in docker), and a
    cloud-init whose `status --wait` blocks for `cloud_init_seconds` (None: not installed)."""

    def prepare(d: Path):
        bindir = d / "bin"
        bindir.mkdir()
        shutil.copy(Path(__file__).with_name("fake_docker.py"), bindir / "docker.pending")
        calls = d / "calls.log"
        scripts = {
            "apt-get": 'echo "apt-get $*" >> "$ZDD_CALLS"\n'
                       'case "$*" in *install*) mv "$(dirname "$0")/docker.pending" "$(dirname "$0")/docker";; esac\n',
            "systemctl": 'echo "systemctl $*" >> "$ZDD_CALLS"\n',
        }
        if cloud_init_seconds is not None:
            scripts["cloud-init"] = ('echo "cloud-init $* started" >> "$ZDD_CALLS"\n'
                                     f"sleep {cloud_init_seconds}\n"
                                     'echo "cloud-init finished" >> "$ZDD_CALLS"\n'
                                     "printf '....\\nstatus: done\\n'\n")
        for name, body in scripts.items():
            (bindir / name).write_text("#!/bin/sh\n" + body)
            (bindir / name).chmod(0o755)
        (bindir / "docker.pending").chmod(0o755)
        # No system bin directory holds a cloud-init here unless this machine has one.
        return (f"SetEnv PATH={bindir}:/usr/sbin:/usr/bin:/sbin:/bin FAKE_DOCKER_STATE={d / 'docker-state.json'} "
                f"ZDD_CALLS={calls}"),

    return sshd_factory(extra_config=prepare)


async def _bootstrap(s, do_api, tmp_path, monkeypatch, quiet_ports, **setup_kw):
    service_port, admin_port = quiet_ports(2)
    monkeypatch.setenv("ZDD_SSH_PRIVATE_KEY", s.client_key_text)
    d = do_api.state.create_droplet("edge-1", tags=["edge"], public_ipv4="127.0.0.1", sandbox={"external": True})
    await do_api.notify_created(d)
    cfg = Config(
        app="edge", context="boot", runtime="ssh",
        digitalocean=DigitalOceanConfig(api_url=do_api.url),
        droplets=DropletsConfig(tag="edge", names=("edge-1",)),
        service=ServiceConfig(port=service_port, admin_port=admin_port),
        deploy=DeployConfig(strategy="lb-drain"),  # the proxy's start is tested in test_runtime_swap
        ssh=SSHConfig(port=s.port, state_dir=str(s.dir / "zdd-state")),
    )
    events: list = []
    async with Setup(cfg, token=TOKEN, emit=events.append, accept_new_host_keys=True, poll_interval=0.05,
                     pool_options={"known_hosts": str(tmp_path / "known_hosts")}, **setup_kw) as setup:
        try:
            await setup.apply("bootstrap")
        except ZddError:
            pass
    report = next(e for e in events if isinstance(e, HostReport))
    calls_file = s.dir / "calls.log"
    calls = calls_file.read_text().splitlines() if calls_file.exists() else []
    return report, calls, events


async def test_bootstrap_waits_for_cloud_init_before_apt(sshd_factory, do_api, tmp_path, monkeypatch, quiet_ports):
    s = _new_droplet_host(sshd_factory, cloud_init_seconds=1.5)
    report, calls, events = await _bootstrap(s, do_api, tmp_path, monkeypatch, quiet_ports)
    assert report.ok, report.checks
    # cloud-init had finished before the first apt-get began.
    assert calls[:2] == ["cloud-init status --wait started", "cloud-init finished"], calls
    assert calls[2].startswith("apt-get update"), calls
    assert report.checks["cloud-init"].startswith("finished (status: done")
    assert report.checks["docker"].startswith("installed")
    said = [e.message for e in events if getattr(e, "step", None) == "bootstrap" and hasattr(e, "message")]
    assert any("waiting for cloud-init" in m and "cloud-init status --wait" in m for m in said), said


async def test_bootstrap_wait_for_cloud_init_is_bounded(sshd_factory, do_api, tmp_path, monkeypatch, quiet_ports):
    s = _new_droplet_host(sshd_factory, cloud_init_seconds=60)
    report, calls, _ = await _bootstrap(s, do_api, tmp_path, monkeypatch, quiet_ports, wait_timeout=2)
    assert not report.ok
    assert report.checks["cloud-init"].startswith("still running after 2s"), report.checks
    assert not [c for c in calls if c.startswith("apt-get")], calls  # never raced the dpkg lock
    assert "cloud-init finished" not in calls  # the host's own timeout ended the wait


@pytest.mark.skipif(shutil.which("cloud-init") is not None, reason="this machine has a cloud-init on PATH")
async def test_host_without_cloud_init_passes_through(sshd_factory, do_api, tmp_path, monkeypatch, quiet_ports):
    s = _new_droplet_host(sshd_factory, cloud_init_seconds=None)
    report, calls, _ = await _bootstrap(s, do_api, tmp_path, monkeypatch, quiet_ports)
    assert report.ok, report.checks
    assert report.checks["cloud-init"] == "not installed: nothing to wait for"
    assert calls[0].startswith("apt-get update"), calls


def _console_source(cfg, client):
    from zdd_tui.cloud.adapter import DOCloud
    from zdd_tui.project import Project
    from zdd_tui.project.open import open_runtime
    from zdd_tui.ui.source import FleetSource

    project = Project(cfg, client=client, cloud=DOCloud(client, cfg),
                      runtime_factory=lambda d: open_runtime(cfg, d, client=client))
    return FleetSource(project, label="DO API (test)")


@pytest.mark.parametrize("answer", ["accept", "refuse"])
async def test_console_setup_asks_for_a_new_host_key(answer, docker_host, do_api, tmp_path, monkeypatch,
                                                     quiet_ports):
    """The console's bootstrap shows the fingerprint and asks: accept pins the key and the host is
    bootstrapped; refuse pins nothing and changes nothing on the host."""
    from zdd_tui.cloud.client import DOClient
    from zdd_tui.ui.app import ZddApp
    from zdd_tui.ui.screens.confirm import ConfirmScreen
    from zdd_tui.ui.screens.setup import SetupScreen

    s = docker_host
    service_port, admin_port = quiet_ports(2)
    monkeypatch.setenv("ZDD_SSH_PRIVATE_KEY", s.client_key_text)
    kh = tmp_path / "known_hosts"
    monkeypatch.setenv("ZDD_KNOWN_HOSTS", str(kh))  # the console's pool uses the default path
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    d = do_api.state.create_droplet("edge-1", tags=["edge"], public_ipv4="127.0.0.1", sandbox={"external": True})
    await do_api.notify_created(d)
    cfg = Config(
        app="edge", context="boot", runtime="ssh",
        digitalocean=DigitalOceanConfig(api_url=do_api.url),
        droplets=DropletsConfig(tag="edge", names=("edge-1",)),
        service=ServiceConfig(port=service_port, admin_port=admin_port),
        deploy=DeployConfig(strategy="lb-drain"),  # the proxy's start is tested in test_runtime_swap
        ssh=SSHConfig(port=s.port, state_dir=str(s.dir / "zdd-state")),
    )
    client = DOClient(do_api.url, TOKEN)
    await client.__aenter__()
    source = _console_source(cfg, client)

    async def until(pilot, predicate, what):
        for _ in range(300):
            if predicate():
                return
            await pilot.pause(0.1)
        raise AssertionError(f"timed out waiting for {what}")

    def log_text(screen) -> str:
        log = screen.query_one("#setup-log")
        return "\n".join("".join(seg.text for seg in strip) for strip in log.lines)

    try:
        app = ZddApp(source, poll="once")
        async with app.run_test(size=(140, 50)) as pilot:
            await pilot.pause()
            await pilot.press("s")
            await pilot.pause()
            screen = app.screen
            assert isinstance(screen, SetupScreen)
            await pilot.press("6")  # the bootstrap step alone
            await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the step's confirmation")
            await pilot.press("y")
            await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the host key question")
            question = app.screen
            title = str(question.query_one("#dialog-title").render())
            body = str(question.query_one("#dialog-body Static").render())
            assert "127.0.0.1" in title and s.host_fingerprint in body
            assert KnownHosts(kh).keys_for("127.0.0.1", s.port) == []  # nothing pinned while asking
            await pilot.press("y" if answer == "accept" else "n")
            await until(pilot, lambda: "setup finished" in log_text(screen) or "✖" in log_text(screen), "the step")
            pinned = [k.get_fingerprint("sha256") for k in KnownHosts(kh).keys_for("127.0.0.1", s.port)]
            if answer == "accept":
                assert "setup finished: bootstrap exists" in log_text(screen)
                assert pinned == [s.host_fingerprint]
                assert (s.dir / "zdd-state" / "edge").is_dir()
            else:
                assert "not pinned yet" in log_text(screen) and "setup finished" not in log_text(screen)
                assert pinned == [] and not kh.exists()
                assert not (s.dir / "zdd-state").exists()
    finally:
        await source.close()
