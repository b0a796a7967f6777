"""local-swap's host parts without a host: the argv builders, the readings of docker and ss, the
choice of what to prune, and the proxy's files (the write snippet run here, as a host runs it)."""

from __future__ import annotations

import subprocess

import pytest
import yaml

from zdd_tui.config import Config, DeployConfig, ProxyConfig, ServiceConfig, SSHConfig
from zdd_tui.hosts import argv as host_argv
from zdd_tui.hosts import proxy as host_proxy
from zdd_tui.hosts import slots as host_slots
from zdd_tui.proxy import traefik

REF = "registry.digitalocean.com/reg/app:sha-abc1234"


def test_slot_run_argv_exact_without_admin_port_or_values():
    argv = host_argv.docker_run_slot("web-b-sha-abc1234", REF, port_env="PORT", port=8082,
                                     env_file_id="abcdef0123456789", bound_seconds=60,
                                     labels={"zdd.slot": "b", "zdd.app": "web"})
    assert argv[:2] == ["sh", "-c"] and 'docker run --env-file "$e" "$@"' in argv[2]
    assert argv[3:] == ["zdd-run", "abcdef0123456789", "60",
                        "--detach", "--name", "web-b-sha-abc1234", "--network", "host",
                        "--restart", "unless-stopped", "--env", "PORT=8082",
                        "--label", "zdd.app=web", "--label", "zdd.slot=b", "--", REF]
    assert "ZDD_ADMIN" not in " ".join(argv)
    with pytest.raises(ValueError):
        host_argv.docker_run_slot("web", REF, port_env="PO RT", port=1, env_file_id="abcdef0123456789",
                                  bound_seconds=1)
    # lb-drain's single container is unchanged.
    assert "always" in host_argv.docker_run("web", REF, port=1, admin_port=2, env_file_id="abcdef0123456789",
                                            bound_seconds=1)


def test_env_file_leaves_out_the_port_variable_and_the_admin_ones():
    text = host_argv.env_file({"PORT": "1", "FOO": "x", "ZDD_ADMIN_PORT": "9"}, fixed=(*host_argv.FIXED_ENV, "PORT"))
    assert text == "FOO=x\n"


def test_listing_inspecting_starting_and_image_removal_argv():
    assert host_argv.docker_slot_ids("web") == [
        "docker", "ps", "--all", "--no-trunc", "--filter", "label=zdd.app=web", "--filter", "label=zdd.slot",
        "--format", "{{.ID}}"]
    ids = ["a" * 64, "0123456789ab"]
    assert host_argv.docker_inspect_ids(ids) == ["docker", "container", "inspect", "--", *ids]
    for bad in ([], ["-f"], ["x" * 12], ["abc"]):
        with pytest.raises(ValueError):
            host_argv.docker_inspect_ids(bad)
    assert host_argv.docker_start("web-a-latest", bound_seconds=59.2) == [
        "timeout", "-k", "5", "60", "docker", "start", "--", "web-a-latest"]
    assert host_argv.docker_image_rm(REF) == ["docker", "image", "rm", "--", REF]
    with pytest.raises(ValueError):
        host_argv.docker_slot_ids("-rf")
    with pytest.raises(ValueError):
        host_argv.docker_image_rm("--force")


def test_proxy_run_argv_mounts_its_directory_read_only():
    argv = host_argv.docker_run_proxy("web-proxy", "traefik:v3.7.15", config_dir="/var/lib/zdd/web/proxy",
                                      mount="/etc/zdd-proxy", config_file="/etc/zdd-proxy/traefik.yml", app="web",
                                      bound_seconds=60)
    assert argv == ["timeout", "-k", "5", "60", "docker", "run", "--detach", "--name", "web-proxy",
                    "--network", "host", "--restart", "always", "--label", "zdd.proxy=web",
                    "--mount", "type=bind,source=/var/lib/zdd/web/proxy,target=/etc/zdd-proxy,readonly",
                    "--", "traefik:v3.7.15", "--configFile=/etc/zdd-proxy/traefik.yml"]
    for bad in ("relative/dir", "/a,b", "/a b", "/a/../b", "/a=b"):
        with pytest.raises(ValueError):
            host_argv.docker_run_proxy("p", "traefik", config_dir=bad, mount="/etc/zdd-proxy",
                                       config_file="/etc/zdd-proxy/traefik.yml", app="web", bound_seconds=1)
    with pytest.raises(ValueError):
        host_argv.docker_run_proxy("p", "traefik", config_dir="/x", mount="/etc/zdd-proxy",
                                   config_file="/elsewhere.yml", app="web", bound_seconds=1)


def test_sockets_argv_and_count():
    assert host_argv.sockets_established(8081) == [
        "ss", "-Htn", "state", "established", "( dst 127.0.0.1 and dport = :8081 )"]
    with pytest.raises(ValueError):
        host_argv.sockets_established(8081, "127.0.0.1 or 1")
    out = ("0      0      127.0.0.1:54776 127.0.0.1:8081\n"
           "0      0      127.0.0.1:54778 127.0.0.1:8081\n\n")
    assert host_slots.count_lines(out) == 2 and host_slots.count_lines("") == 0


def test_registry_of_a_reference():
    assert host_argv.registry_of("traefik:v3.7.15") == "docker.io"
    assert host_argv.registry_of("library/traefik") == "docker.io"
    assert host_argv.registry_of("10.0.0.5:5000/lab/traefik:v3") == "10.0.0.5:5000"
    assert host_argv.registry_of(REF) == "registry.digitalocean.com"


def _raw(name, *, slot="a", port="8081", tag="sha-1", status="exited", finished="2026-11-26T12:00:05.5Z",
         env=(), labels_extra=None):
    labels = {"zdd.app": "web", "zdd.slot": slot, "zdd.port": port, "zdd.tag": tag, **(labels_extra or {})}
    return {"Name": "/" + name, "Image": "sha256:" + "1" * 64,
            "Config": {"Image": f"reg/app:{tag}", "Labels": labels, "Env": list(env)},
            "State": {"Status": status, "Running": status == "running", "ExitCode": 0,
                      "StartedAt": "2026-11-26T12:00:00.123456789Z", "FinishedAt": finished},
            "RestartCount": 2}


def test_inspect_json_to_container_info():
    c = host_slots.container_info(_raw("web-a-sha-1"))
    assert (c.name, c.slot, c.port, c.tag, c.state, c.restart_count) == ("web-a-sha-1", "a", 8081, "sha-1",
                                                                         "exited", 2)
    assert c.stopped_at == pytest.approx(1795694405.5) and c.started_at == pytest.approx(1795694400.123456789)
    running = host_slots.container_info(_raw("web-b-sha-2", slot="b", status="running"))
    assert running.stopped_at is None and running.exit_code is None
    odd = host_slots.container_info(_raw("x", slot="c", port="nope", finished="0001-01-01T00:00:00Z"))
    assert odd.slot is None and odd.port is None and odd.stopped_at is None
    assert host_slots.container_name("web", "b", "sha-abc") == "web-b-sha-abc"
    with pytest.raises(ValueError):
        host_slots.container_name("web", "c", "sha-abc")


def test_prune_keeps_the_newest_stopped_and_every_live_one():
    cs = [host_slots.container_info(_raw(f"web-a-sha-{i}", finished=f"2026-11-26T12:00:0{i}Z")) for i in range(5)]
    cs.append(host_slots.container_info(_raw("web-b-live", slot="b", status="running")))
    cs.append(host_slots.container_info(_raw("web-b-crashing", slot="b", status="restarting")))
    assert [c.name for c in host_slots.to_prune(cs, 3)] == ["web-a-sha-1", "web-a-sha-0"]
    assert host_slots.to_prune(cs, 10) == []
    assert [c.name for c in host_slots.live_on(cs, "b")] == ["web-b-live", "web-b-crashing"]


def test_a_kept_container_is_started_again_only_when_it_would_run_the_same():
    want = host_slots.env_lines("FOO=x\nZDD_ROLLOUT_ID=r-1\nZDD_VERSION=sha-1\n", {"PORT": "8081"})
    assert want == {"FOO=x", "ZDD_VERSION=sha-1", "PORT=8081"}
    names = host_slots.env_names(want)
    assert names == "FOO,PORT,ZDD_VERSION"
    env = ["PATH=/usr/bin", "FOO=x", "ZDD_VERSION=sha-1", "PORT=8081", "ZDD_ROLLOUT_ID=r-0"]
    raw = _raw("web-a-sha-1", env=env, labels_extra={"zdd.env": names})
    assert host_slots.same_start(raw, slot="a", image_ref="reg/app:sha-1", want_env=want)
    assert not host_slots.same_start(raw, slot="b", image_ref="reg/app:sha-1", want_env=want)
    assert not host_slots.same_start(raw, slot="a", image_ref="reg/app:sha-2", want_env=want)
    assert not host_slots.same_start(raw, slot="a", image_ref="reg/app:sha-1", want_env=want | {"NEW=1"})
    assert not host_slots.same_start(raw, slot="a", image_ref="reg/app:sha-1", want_env=want - {"FOO=x"})
    assert not host_slots.same_start(_raw("web-a-sha-1", env=env), slot="a", image_ref="reg/app:sha-1",
                                     want_env=want)  # no zdd.env label: cannot tell


def _cfg(tmp_path) -> Config:
    return Config(app="web", ssh=SSHConfig(state_dir=str(tmp_path / "state")),
                  service=ServiceConfig(port=18080), deploy=DeployConfig(stop_grace_seconds=7),
                  proxy=ProxyConfig(port=19180, slot_a_port=18081, slot_b_port=18082))


def test_proxy_files_say_what_the_droplet_needs(tmp_path):
    cfg = _cfg(tmp_path)
    lay = host_proxy.layout(cfg)
    assert lay.dir == f"{tmp_path}/state/web/proxy"
    assert lay.static_path == f"{lay.dir}/traefik.yml" and lay.dynamic_path == f"{lay.dir}/dynamic/app.yml"
    static = yaml.safe_load(host_proxy.static_text(cfg))
    assert static["entryPoints"]["web"]["address"] == "0.0.0.0:18080"
    assert static["entryPoints"]["zdd"]["address"] == "127.0.0.1:19180"
    assert static["providers"]["file"]["directory"] == "/etc/zdd-proxy/dynamic"
    assert static["api"] == {"dashboard": False} and "insecure" not in str(static)
    dyn = yaml.safe_load(host_proxy.dynamic_text(cfg, "b"))["http"]
    assert dyn["routers"]["app"]["service"] == "slot-b"
    assert dyn["services"]["slot-b"]["loadBalancer"]["servers"] == [{"url": "http://127.0.0.1:18082"}]
    # The only API router is the read-only internal API, on the loopback-only entry point.
    api = [r for r in dyn["routers"].values() if "api" in r["service"]]
    assert api == [{"entryPoints": ["zdd"], "rule": "PathPrefix(`/api`)", "service": "api@internal"}]
    assert "app" not in yaml.safe_load(host_proxy.dynamic_text(cfg, None))["http"]["routers"]
    # What a kept file routes to (a second install waits for the proxy to apply it).
    assert traefik.slot_of_dynamic(host_proxy.dynamic_text(cfg, "b")) == "b"
    for text in (host_proxy.dynamic_text(cfg, None), None, "", "{", "http: 3"):
        assert traefik.slot_of_dynamic(text) is None
    assert host_proxy.container_name(cfg) == "web-proxy" and host_proxy.config_file() == "/etc/zdd-proxy/traefik.yml"


def test_the_proxy_file_write_replaces_atomically_in_a_private_directory(tmp_path):
    cfg = _cfg(tmp_path)
    lay = host_proxy.layout(cfg)

    def write(directory: str, name: str, text: str) -> int:
        argv = host_argv.proxy_file_write(directory, name)
        return subprocess.run(argv, input=text.encode(), check=False).returncode

    assert write(lay.dynamic_dir, traefik.DYNAMIC_FILE, "one\n") == 0
    first = (tmp_path / "state/web/proxy/dynamic/app.yml").stat()
    assert oct(first.st_mode & 0o777) == "0o600"
    for d in ("state/web/proxy", "state/web/proxy/dynamic"):
        assert oct((tmp_path / d).stat().st_mode & 0o777) == "0o700"
    assert write(lay.dynamic_dir, traefik.DYNAMIC_FILE, "one\n") == host_argv.EXIT_UNCHANGED
    assert (tmp_path / "state/web/proxy/dynamic/app.yml").stat().st_ino == first.st_ino
    assert write(lay.dynamic_dir, traefik.DYNAMIC_FILE, "two\n") == 0
    after = (tmp_path / "state/web/proxy/dynamic/app.yml")
    assert after.read_text() == "two\n" and after.stat().st_ino != first.st_ino  # a new file, renamed in
    assert [p.name for p in (tmp_path / "state/web/proxy/dynamic").iterdir()] == ["app.yml"]
    with pytest.raises(ValueError):
        host_argv.proxy_file_write(lay.dynamic_dir, "../x")
