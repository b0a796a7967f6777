"""DockerSSHRuntime over a real sshd: the docker commands it sends (to a stand-in docker CLI on
the host's PATH), read-only pull credentials from the sandbox DO API on stdin, ImageNotFound,
the container lifecycle, and the admin/health endpoints through SSH forwards; plus bootstrap."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import os
import signal
import threading
import time
from pathlib import Path

import aiohttp.web
import pytest

from zdd_tui.cloud.client import DOClient
from zdd_tui.cloud.models import Droplet
from zdd_tui.config import Config, DeployConfig, RegistryConfig, ServiceConfig, SSHConfig
from zdd_tui.events import LogLine
from zdd_tui.hosts import argv as host_argv
from zdd_tui.hosts.bootstrap import bootstrap_host
from zdd_tui.hosts.known_hosts import KnownHosts
from zdd_tui.hosts.runner import CommandFailed, HostShell
from zdd_tui.hosts.runtime import DockerSSHRuntime
from zdd_tui.hosts.ssh import SSHPool
from zdd_tui.rollout.interfaces import ImageNotFound, RuntimeFailure

TOKEN = "runtime-test-token"
REPO = "registry.digitalocean.com/team/app"


def _state(s) -> dict:
    return json.loads((s.dir / "docker-state.json").read_text())


def _on_host(s, path: str) -> Path:
    """A path as the sshd's sessions see it (they have their own /run: a tmpfs)."""
    return Path(f"/proc/{s.pid}/root{path}")


@pytest.fixture
async def do_api():
    from zdd_tui.sandbox.api import SandboxAPI

    api = SandboxAPI(None, TOKEN, activation_delay=0.1, registry_server="registry.digitalocean.com")
    await api.start()
    async with DOClient(api.url, TOKEN) as c:
        await c.create_registry("team", "starter")
    yield api
    await api.stop()


async def _service(admin_port: int = 0, service_port: int = 0):
    """A loopback-only stand-in for the service's admin and public ports."""
    seen = {"drain": 0, "probe_headers": []}

    async def stats(request):
        return aiohttp.web.json_response({
            "id": "abc", "version": "sha-1234567", "draining": seen["drain"] > 0, "healthy": True, "served": 42,
            "in_flight": 1, "last_request_age_seconds": 0.5, "uptime_seconds": 9.0,
            "health_checkers": [
                {"source": "10.0.0.9", "consecutive_ok": 3, "consecutive_fail": 0, "last_age_seconds": 1.5},
            ],
        })

    async def drain(request):
        seen["drain"] += 1
        return aiohttp.web.json_response({"draining": True})

    async def health(request):
        seen["probe_headers"].append(request.headers.get("X-Zdd-Probe"))
        return aiohttp.web.json_response({"status": "draining"}, status=503)

    admin = aiohttp.web.Application()
    admin.router.add_get("/admin/stats", stats)
    admin.router.add_post("/admin/drain", drain)
    public = aiohttp.web.Application()
    public.router.add_get("/health", health)
    runners = []
    ports = []
    for app, port in ((admin, admin_port), (public, service_port)):
        r = aiohttp.web.AppRunner(app)
        await r.setup()
        site = aiohttp.web.TCPSite(r, "127.0.0.1", port)
        await site.start()
        runners.append(r)
        ports.append(site._server.sockets[0].getsockname()[1])
    return runners, ports, seen


def _droplet() -> Droplet:
    return Droplet(id=7, name="api-1", status="active", region="nyc3", size="s", public_ipv4="127.0.0.1",
                   private_ipv4="10.0.0.7")


@pytest.mark.slow
async def test_pull_run_stop_logs_with_read_only_credentials(docker_host, do_api, tmp_path):
    s = docker_host
    cfg = Config(
        app="web",
        registry=RegistryConfig(name="team", repository="app"),
        ssh=SSHConfig(port=s.port, state_dir=str(s.dir / "state")),
        service=ServiceConfig(port=18080, admin_port=19090, env={"FOO": "a b"}),
    )
    pool = SSHPool(s.client_key_text, known_hosts=KnownHosts(tmp_path / "kh"), accept_new=True, port=s.port)
    events = []
    async with DOClient(do_api.url, TOKEN) as client:
        rt = DockerSSHRuntime(cfg, _droplet(), pool=pool, client=client, on_event=events.append)
        try:
            with pytest.raises(ImageNotFound, match="no such tag"):
                await rt.pull(f"{REPO}:missing")
            info = await rt.pull(f"{REPO}:sha-1234567")
            assert info.tag == "sha-1234567" and info.digest.startswith("sha256:") and info.ref == f"{REPO}:sha-1234567"
            # Pull output streamed into LogLine events for this host.
            assert any(isinstance(e, LogLine) and e.host == "api-1" and "Pull complete" in e.line for e in events)

            st = _state(s)
            # Credentials: read-only, asked from DO each time, delivered on stdin into a 0700
            # DOCKER_CONFIG in memory (never /tmp) that is gone afterwards and never on any argv.
            assert [c["read_write"] for c in do_api.issued_credentials] == [False, False]
            for p in st["pulls"]:
                assert p["dir_mode"] == "0o700" and p["file_mode"] == "0o600" and p["fs"] == "tmpfs"
                assert p["docker_config"].startswith("/run/zdd-tui-0/pull.")
                assert set(p["config"]["auths"]) == {"registry.digitalocean.com"}
                assert not _on_host(s, p["docker_config"]).exists()
                secret = p["config"]["auths"]["registry.digitalocean.com"]["auth"]
                assert all(secret not in " ".join(call) for call in st["calls"])

            assert await rt.inspect() is None
            c = await rt.run(f"{REPO}:sha-1234567", env={"EXTRA": "1"})
            assert (c.name, c.state, c.tag, c.digest) == ("web", "running", "sha-1234567", info.digest)
            assert c.started_at is not None and c.exit_code is None
            raw = _state(s)["containers"]["web"]
            assert raw["HostConfig"] == {"NetworkMode": "host", "RestartPolicy": {"Name": "always"}}
            assert {"FOO=a b", "EXTRA=1", "ZDD_PORT=18080", "ZDD_ADMIN_PORT=19090", "ZDD_ADMIN_HOST=127.0.0.1",
                    "ZDD_VERSION=sha-1234567"} <= set(raw["Config"]["Env"])
            assert raw["Config"]["Labels"]["zdd.tag"] == "sha-1234567"

            with pytest.raises(RuntimeFailure, match="is running"):
                await rt.run(f"{REPO}:sha-1234567")

            assert await rt.logs(tail=3) == ["line 5", "line 6", "line 7", "an error line"]
            # --since goes to docker's own filter (lines i were written at 1700000000 + i)
            assert await rt.logs(tail=100, since=1_700_000_005.5) == ["line 6", "line 7", "an error line"]
            assert _state(s)["logs_since"] == "1700000005.500000000"
            await rt.stop(2.5)
            assert _state(s)["stop_timeout"] == "3"
            assert await rt.inspect() is None
            await rt.stop(1)  # no container: a no-op
            assert await rt.logs() == []

            # A stopped container of the same name is removed before the new one starts.
            await rt.run(f"{REPO}:sha-1234567")
            st = _state(s)
            st["containers"]["web"]["State"].update({"Status": "exited", "Running": False, "ExitCode": 3})
            (s.dir / "docker-state.json").write_text(json.dumps(st))
            gone = await rt.inspect()
            assert gone.state == "exited" and gone.exit_code == 3
            again = await rt.run(f"{REPO}:sha-1234567")
            assert again.state == "running"
        finally:
            await rt.close()
            await pool.close()


async def test_admin_and_health_through_ssh_forwards(sshd, tmp_path):
    runners, (admin_port, service_port), seen = await _service()
    try:
        cfg = Config(ssh=SSHConfig(port=sshd.port), service=ServiceConfig(port=service_port, admin_port=admin_port))
        pool = SSHPool(sshd.client_key_text, known_hosts=KnownHosts(tmp_path / "kh"), accept_new=True, port=sshd.port)
        rt = DockerSSHRuntime(cfg, _droplet(), pool=pool, registry_auth=False)
        try:
            st = await rt.stats()
            assert st.served == 42 and st.in_flight == 1 and not st.draining
            assert st.health_checkers[0].source == "10.0.0.9" and st.health_checkers[0].consecutive_ok == 3
            await rt.drain()
            assert seen["drain"] == 1 and (await rt.stats()).draining
            probe = await rt.probe_health()
            assert (probe.healthy, probe.status) == (False, 503) and "draining" in probe.detail
            assert seen["probe_headers"] == ["zdd-tui"]
            # undrain is not served by this stand-in: a clear failure naming the path and status.
            with pytest.raises(RuntimeFailure, match="/admin/undrain answered HTTP 404"):
                await rt.undrain()
        finally:
            await rt.close()
            await pool.close()
    finally:
        for r in runners:
            await r.cleanup()
    # Nothing listens any more: no stats, an unhealthy probe that says why.
    pool = SSHPool(sshd.client_key_text, known_hosts=KnownHosts(tmp_path / "kh"), accept_new=False, port=sshd.port)
    rt = DockerSSHRuntime(cfg, _droplet(), pool=pool, registry_auth=False)
    try:
        assert await rt.stats() is None
        probe = await rt.probe_health()
        assert not probe.healthy and probe.status is None and "no answer" in probe.detail
    finally:
        await rt.close()
        await pool.close()


async def test_bootstrap_reports_per_host(docker_host, tmp_path, quiet_ports):
    s = docker_host
    free_port, free_admin_port = quiet_ports(2)
    runners, (_admin_port, busy_port), _ = await _service()
    try:
        lb_drain = DeployConfig(strategy="lb-drain")
        cfg = Config(app="web", ssh=SSHConfig(port=s.port, state_dir=str(s.dir / "var-lib-zdd")),
                     service=ServiceConfig(port=busy_port, admin_port=0), deploy=lb_drain)
        cfg_free = Config(app="web", ssh=SSHConfig(port=s.port, state_dir=str(s.dir / "var-lib-zdd")),
                          service=ServiceConfig(port=free_port, admin_port=free_admin_port), deploy=lb_drain)
        pool = SSHPool(s.client_key_text, known_hosts=KnownHosts(tmp_path / "kh"), accept_new=True, port=s.port)
        try:
            ok = await bootstrap_host(cfg_free, _droplet(), pool, install_docker=False)
            assert ok.ok, ok.checks
            assert ok.checks["host key"] == f"pinned {s.host_fingerprint}"
            assert ok.checks["docker"].startswith("present (engine 20.10")
            assert (s.dir / "var-lib-zdd" / "web").is_dir()
            assert oct((s.dir / "var-lib-zdd" / "web").stat().st_mode & 0o777) == "0o700"
            bad = await bootstrap_host(cfg, _droplet(), pool, install_docker=False)
            assert not bad.ok
            assert bad.checks[f"service port {busy_port}"].startswith("in use by another process")
        finally:
            await pool.close()
    finally:
        for r in runners:
            await r.cleanup()


def _pids_with(needle: str) -> list[int]:
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                if needle.encode() in Path(f"/proc/{d}/cmdline").read_bytes():
                    out.append(int(d))
            except OSError:
                pass
    return out


async def _wait_for(pred, timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    while not (value := pred()):
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.05)
    return value


@pytest.mark.slow
async def test_credentials_of_a_pull_killed_mid_way_are_swept_at_the_next_connection(docker_host, tmp_path):
    s = docker_host
    kh = KnownHosts(tmp_path / "kh")
    ref = f"{REPO}:block"
    creds = json.dumps({"auths": {"registry.digitalocean.com": {"auth": "bGFiOnMzY3IzdC1wdWxs"}}})
    # A bare shell (no runtime: nothing of ours cleans up after it) starts a pull that hangs.
    pool = SSHPool(s.client_key_text, known_hosts=kh, accept_new=True, port=s.port)
    shell = HostShell(pool, "127.0.0.1")
    argv = host_argv.docker_pull(ref, bound_seconds=1, credentials_id="feedf00d")
    pulling = asyncio.create_task(shell.run(argv, input=creds, check=False))
    try:
        rec = await _wait_for(lambda: next((p for p in _state(s)["pulls"] if p["ref"] == ref), None)
                              if (s.dir / "docker-state.json").exists() else None)
        left = _on_host(s, rec["docker_config"])
        assert rec["fs"] == "tmpfs" and not rec["docker_config"].startswith("/tmp")
        # The worst case: the session's processes die at once (no trap runs) and the connection drops.
        for pid in _pids_with("feedf00d") + _pids_with(ref):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        pool.drop("127.0.0.1")
        with contextlib.suppress(Exception):
            await asyncio.wait_for(pulling, 10)
        assert (left / "config.json").exists()  # left behind, in memory only
    finally:
        pulling.cancel()
        await pool.close()
    # Another pull, still within its bound, must survive the sweep.
    running = _on_host(s, f"/run/zdd-tui-0/pull.{int(time.time()) + 3600}.0badc0de")
    running.mkdir()
    deadline = int(left.name.split(".")[1])
    assert deadline <= time.time() + 1 + 8  # the bound, the KILL after it, a little slack
    await asyncio.sleep(max(0.0, deadline + 1 - time.time()))

    events = []
    cfg = Config(app="web", ssh=SSHConfig(port=s.port, state_dir=str(s.dir / "state")))
    pool = SSHPool(s.client_key_text, known_hosts=kh, port=s.port)
    rt = DockerSSHRuntime(cfg, _droplet(), pool=pool, registry_auth=False, on_event=events.append)
    try:
        assert await rt.inspect() is None  # any command: a new connection is swept first
        assert not left.exists() and running.exists()
        removed = [e.line for e in events if "removed" in e.line]
        assert removed == [f"removed {left.name}, left by an interrupted command"]
    finally:
        await rt.close()
        await pool.close()


@pytest.mark.slow
async def test_environment_values_never_reach_a_command_line_a_message_or_the_disk(docker_host, tmp_path):
    s = docker_host
    marker = f"marker-{os.getpid()}-{time.monotonic_ns()}"
    cfg = Config(app="web", ssh=SSHConfig(port=s.port, state_dir=str(s.dir / "state")),
                 service=ServiceConfig(port=18080, admin_port=19090, env={"FOO": marker}))
    pool = SSHPool(s.client_key_text, known_hosts=KnownHosts(tmp_path / "kh"), accept_new=True, port=s.port)
    rt = DockerSSHRuntime(cfg, _droplet(), pool=pool, registry_auth=False)
    seen: list[str] = []
    samples = 0
    stop = threading.Event()

    def watch() -> None:
        # Every process's argv, over and over, while the runtime works.
        nonlocal samples
        while not stop.is_set():
            for d in os.listdir("/proc"):
                if d.isdigit():
                    try:
                        argv = Path(f"/proc/{d}/cmdline").read_bytes()
                    except OSError:
                        continue
                    if marker.encode() in argv:
                        seen.append(argv.decode(errors="replace"))
            samples += 1

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        await rt.pull(f"{REPO}:sha-1234567")
        await rt.run(f"{REPO}:sha-1234567", env={"ZDD_ROLLOUT_ID": "r-1"})
        await rt.stop(1)
        # A start that fails: its message is what the engine reports and journals as `seen`.
        with pytest.raises(CommandFailed) as err:
            await rt.run(f"{REPO}:badrun")
    finally:
        stop.set()
        await asyncio.to_thread(watcher.join, 10)
        await rt.close()
        await pool.close()
    assert "exec format error" in str(err.value)
    assert marker not in str(err.value) and marker not in " ".join(err.value.argv)
    st = _state(s)
    assert samples > 20 and seen == []
    assert all(marker not in " ".join(call) for call in st["calls"])
    # It did reach the container, through an env file in memory that is gone after each start.
    assert st["containers"] == {} and len(st["env_files"]) == 2
    for f in st["env_files"]:
        assert f["mode"] == "0o600" and f["fs"] == "tmpfs" and f["path"].startswith("/run/zdd-tui-0/env.")
        assert not _on_host(s, f["path"]).exists()
    assert list(_on_host(s, "/run/zdd-tui-0").iterdir()) == []


@pytest.mark.slow
async def test_environment_reaches_the_container(docker_host, tmp_path):
    s = docker_host
    cfg = Config(app="web", ssh=SSHConfig(port=s.port, state_dir=str(s.dir / "state")),
                 service=ServiceConfig(port=18080, admin_port=19090,
                                       env={"FOO": "marker-123", "ZDD_ADMIN_HOST": "0.0.0.0", "SPACED": " a b "}))
    pool = SSHPool(s.client_key_text, known_hosts=KnownHosts(tmp_path / "kh"), accept_new=True, port=s.port)
    rt = DockerSSHRuntime(cfg, _droplet(), pool=pool, registry_auth=False)
    try:
        await rt.pull(f"{REPO}:sha-1234567")
        await rt.run(f"{REPO}:sha-1234567", env={"ZDD_ROLLOUT_ID": "r-1"})
        env = _state(s)["containers"]["web"]["Config"]["Env"]
        assert {"FOO=marker-123", "SPACED= a b ", "ZDD_ROLLOUT_ID=r-1", "ZDD_VERSION=sha-1234567",
                "ZDD_ADMIN_HOST=127.0.0.1"} <= set(env)
        assert "ZDD_ADMIN_HOST=0.0.0.0" not in env
    finally:
        await rt.close()
        await pool.close()


@pytest.mark.slow
async def test_a_deploy_whose_start_fails_on_the_host_journals_and_reports_no_environment_value(docker_host,
                                                                                                 tmp_path):
    """The engine in virtual time with one host starting its container over real SSH: the failure
    it reports and the journal's `seen` hold the docker error, never an environment value."""
    from rollout.fakes import FakeClock, FakeCloud, FakeHost, World, ref

    from zdd_tui.config import DeployConfig
    from zdd_tui.rollout.engine import Engine, EngineOptions
    from zdd_tui.rollout.events import OutcomeStatus, Phase
    from zdd_tui.rollout.journal import Journal, read_records
    from zdd_tui.rollout.plan import HostFact, build_plan

    s = docker_host
    marker = f"marker-{os.getpid()}-{time.monotonic_ns()}"
    cfg = Config(app="web", ssh=SSHConfig(port=s.port, state_dir=str(s.dir / "state")),
                 service=ServiceConfig(port=18080, admin_port=19090, env={"FOO": marker}))
    kh = KnownHosts(tmp_path / "kh")
    new = "sha-bbbbbbb"

    def start_over_ssh(env) -> None:
        async def start() -> None:
            pool = SSHPool(s.client_key_text, known_hosts=kh, accept_new=True, port=s.port)
            rt = DockerSSHRuntime(cfg, _droplet(), pool=pool, registry_auth=False)
            try:
                await rt.run(f"{REPO}:badrun", env=env)
            finally:
                await rt.close()
                await pool.close()

        # Its own thread and loop, waited for: virtual time stands still meanwhile.
        with concurrent.futures.ThreadPoolExecutor(1) as ex:
            ex.submit(asyncio.run, start()).result()

    class StartsOverSSH(FakeHost):
        async def run(self, image_ref: str, env=None):
            if image_ref == ref(new):
                self._note(f"run {new}")
                start_over_ssh(env)
            return await super().run(image_ref, env)

    clock = FakeClock()
    world = World(clock, names=("app-1", "app-2"))
    world.add_version(new)
    host = StartsOverSSH(world, "app-1", world.hosts["app-1"].address)
    host.container = world.hosts["app-1"].container
    world.hosts["app-1"] = host
    deploy = DeployConfig(batch_size=1, start_timeout_seconds=20, margin_seconds=2, stop_grace_seconds=10,
                          pull_timeout_seconds=60)
    facts = [HostFact(n, h.address, h.container.tag, settled=True) for n, h in world.hosts.items()]
    plan = build_plan(facts, new, ref(new), world.settings, deploy)
    engine = Engine(plan, world.hosts, FakeCloud(world), world.settings, deploy, clock=clock,
                    journal=Journal(world.hosts, wallclock=clock.now), operator="tester@box",
                    options=EngineOptions(env={"ZDD_ROLLOUT_ID": "r-1"}))
    out = await clock.run(engine.run())
    assert out.status == OutcomeStatus.HALTED and out.failed_step == Phase.STARTING
    assert "exec format error" in out.seen
    records = (await read_records(world.hosts)).records
    journal = json.dumps(records)
    assert "exec format error" in journal
    for text in (out.message, out.seen, journal):
        assert marker not in text
    assert all(marker not in " ".join(call) for call in _state(s)["calls"])
