"""The lab itself works: SSH, Docker over SSH, host networking, the registry, isolation, teardown."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

import labkit
from labkit import report

SMOKE_PORT = 18080


def test_ssh_with_the_key_reaches_each_host_in_its_namespace(lab):
    for h in lab.hosts:
        out = lab.ssh(h, "ip -o -4 addr show dev eth0; id -u").stdout
        assert f"inet {h.ip}/24" in out, out
        assert out.strip().endswith("0"), out
    # the pinned host keys are the ones the lab generated, one per host
    pinned = lab.known_hosts.read_text()
    for h in lab.hosts:
        pub = (h.dir / "ssh_host_ed25519_key.pub").read_text().split()[1]
        assert pub in pinned


def test_sshd_refuses_other_keys_and_passwords(lab, tmp_path):
    other = tmp_path / "other"
    labkit.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)])
    h = lab.hosts[0]
    argv = ["ssh", "-i", str(other), "-o", f"UserKnownHostsFile={lab.known_hosts}", "-o", "BatchMode=yes",
            "-o", "IdentitiesOnly=yes", "-o", "PreferredAuthentications=publickey,password,keyboard-interactive",
            f"root@{h.ip}", "true"]
    cp = labkit.run(argv, check=False)
    assert cp.returncode == 255 and "Permission denied" in cp.stderr, cp.stderr


def test_no_default_route_in_any_namespace(lab):
    for ns in labkit.netns_list(lab.tag):
        out = labkit.run(["ip", "netns", "exec", ns, "ip", "route", "show", "default"]).stdout
        assert out.strip() == "", f"{ns} has a default route: {out}"
        routes = labkit.run(["ip", "netns", "exec", ns, "ip", "-4", "route"]).stdout.strip().splitlines()
        assert routes == [(f"{lab.net}.0/24 dev eth0 proto kernel scope link src "
                           f"{routes[0].split('src ')[1]}")], routes
    assert len(labkit.netns_list(lab.tag)) == len(lab.hosts) + (1 if lab.builder else 0)


def test_docker_over_ssh_uses_each_hosts_own_engine(lab):
    ids = set()
    for h in lab.hosts:
        over_ssh = lab.ssh(h, "docker info --format '{{.ID}} {{.DockerRootDir}}'").stdout.strip()
        direct = h.engine.docker("info", "--format", "{{.ID}} {{.DockerRootDir}}").stdout.strip()
        assert over_ssh and over_ssh == direct
        ids.add(over_ssh)
    assert len(ids) == len(lab.hosts)


def test_hosts_have_separate_state_tmp_and_home(lab):
    a, b = lab.hosts[0], lab.hosts[1]
    lab.ssh(a, "mkdir -p /var/lib/zdd/smoke && echo a > /var/lib/zdd/smoke/who && echo a > /tmp/who && echo a > ~/who")
    try:
        out = lab.ssh(b, "cat /var/lib/zdd/smoke/who /tmp/who ~/who 2>&1; true").stdout
        assert "No such file" in out and "a\n" not in out, out
        assert (a.dir / "varlibzdd" / "smoke" / "who").read_text() == "a\n"
        assert not os.path.exists("/var/lib/zdd/smoke")  # the root namespace does not see it either
    finally:
        lab.ssh(a, "rm -rf /var/lib/zdd/smoke /tmp/who ~/who")


def test_builder_builds_and_pushes_and_a_host_pulls_and_serves_with_host_network(lab, tmp_path):
    """A RUN step works with --bridge=none; the registry takes the push; a host pulls over SSH; the
    container on --network host answers on the host's address from the root namespace."""
    tag = f"{lab.registry_addr}/zdd-lab/smoke:t{int(time.time())}"
    (tmp_path / "Dockerfile").write_text(
        "ARG BASE\nFROM ${BASE}\nRUN python3 -c 'import aiohttp; print(aiohttp.__version__)' > /aiohttp-version\n"
        "COPY hello.txt /srv/hello.txt\nWORKDIR /srv\n"
    )
    (tmp_path / "hello.txt").write_text("hello from the lab\n")
    lab.builder.docker("build", "--build-arg", f"BASE={lab.base_image}", "-t", tag, str(tmp_path), timeout=300)
    # the registry wants credentials: without them the push is refused
    anon = lab.builder.docker("push", tag, check=False, timeout=120)
    assert anon.returncode != 0, anon.stderr
    assert "no basic auth" in anon.stderr or "authentication required" in anon.stderr, anon.stderr
    lab.builder.docker("push", tag, timeout=300, env=lab.builder_env())
    status, _ = labkit.http_get(lab.bridge_ip, labkit.REGISTRY_PORT, "/v2/_catalog")
    assert status == 401

    h = lab.hosts[1]
    anon = lab.ssh(h, f"docker pull -q {tag}", check=False, timeout=120)
    assert anon.returncode != 0, anon.stdout
    cmd, stdin = lab.host_login_script(f"docker pull -q {tag}")
    lab.ssh(h, cmd, input=stdin, timeout=300)
    # the temporary login left nothing on the host
    assert lab.registry_password not in lab.ssh(h, "cat ~/.docker/config.json 2>/dev/null; ls -A /tmp").stdout
    name = "zdd-lab-smoke"
    lab.ssh(h, f"docker run -d --name {name} --network host {tag} "
               f"python3 -m http.server --bind {h.ip} {SMOKE_PORT}")
    try:
        deadline = time.monotonic() + 20
        status, body = 0, b""
        while time.monotonic() < deadline:
            try:
                status, body = labkit.http_get(h.ip, SMOKE_PORT, "/hello.txt", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        assert status == 200 and body == b"hello from the lab\n"
        # it listens on the host's address only in that host's namespace: the next host has nothing there
        with pytest.raises(OSError):
            labkit.http_get(lab.hosts[2].ip, SMOKE_PORT, "/hello.txt", timeout=1)
    finally:
        lab.ssh(h, f"docker rm -f {name}", check=False)


def test_keyring_is_a_real_secret_service(lab):
    code = ("import keyring, sys\n"
            "kr = keyring.get_keyring()\n"
            "keyring.set_password('zdd-lab-smoke', 'u', 'not-a-real-secret')\n"
            "assert keyring.get_password('zdd-lab-smoke', 'u') == 'not-a-real-secret'\n"
            "keyring.delete_password('zdd-lab-smoke', 'u')\n"
            "print(type(kr).__module__ + '.' + type(kr).__name__)\n")
    env = {**os.environ, **lab.keyring_env}
    cp = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert cp.returncode == 0, cp.stderr
    assert "SecretService" in cp.stdout, cp.stdout


def test_teardown_leaves_nothing(lab_lock):
    """A second, small lab (1 host, a running container) torn down: no namespace, link, process,
    mount, cgroup or directory of it is left, and every PID it had is gone."""
    mini = labkit.Lab(hosts_count=1, subnet_index=1, with_builder=False, with_registry=False,
                      with_keyring=False, with_base_image=False)
    pids: list[int] = []
    try:
        mini.up()
        h = mini.hosts[0]
        tar = labkit.base_tarball(mini.timings)
        t0 = time.monotonic()
        with open(tar, "rb") as f:
            h.engine.docker("import", "-", "zdd-lab/base:mini", stdin=f, timeout=300)
        mini.timings["docker import (mini host)"] = time.monotonic() - t0
        mini.ssh(h, f"docker run -d --restart always --stop-timeout 2 --network host --name mini zdd-lab/base:mini "
                    f"python3 -m http.server --bind {h.ip} {SMOKE_PORT}")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if labkit.http_get(h.ip, SMOKE_PORT, "/", timeout=1)[0] == 200:
                    break
            except OSError:
                time.sleep(0.1)
        else:
            pytest.fail("the mini lab's container did not answer")
        for ns in labkit.netns_list(mini.tag):
            pids += labkit.netns_pids(ns)
        pids += labkit.marked_pids(str(mini.dir))
        assert labkit.mounts_under([str(mini.dir)]), "expected dockerd's mounts while the container runs"
    finally:
        left = mini.down()
    report(mini.print_timings("mini lab timings"))
    assert not any(left.values()), left
    assert not any(labkit.leftovers(mini.tag, str(mini.dir)).values())
    still = [p for p in set(pids) if labkit.alive(p)]
    assert not still, f"processes still alive: {still}"
    assert not os.path.exists(mini.dir)
    assert labkit.links_with_prefix(mini.tag) == []


def test_a_crashed_runs_leftovers_are_swept(lab, lab_lock):
    """A lab whose process was SIGKILLed leaves daemons, namespaces, a bridge and mounts; the sweep
    that runs at session start (by name prefix and the processes' lab mark) removes all of it."""
    code = ("import sys, time; sys.path.insert(0, sys.argv[1]); import labkit\n"
            "lab = labkit.Lab(hosts_count=1, subnet_index=2, with_builder=False, with_registry=True,"
            " with_keyring=True, with_base_image=False)\n"
            "lab.up(); print(lab.tag, lab.dir, flush=True); time.sleep(300)\n")
    p = subprocess.Popen([sys.executable, "-c", code, os.path.dirname(os.path.abspath(labkit.__file__))],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        line = p.stdout.readline().split()
    finally:
        p.kill()  # no teardown runs: a crash
        p.wait()
    assert len(line) == 2, "the child lab did not come up"
    tag, run_dir = line
    before = labkit.leftovers(tag, run_dir)
    assert before["netns"] and before["links"] and before["processes"] and before["mounts"], before
    labkit.sweep(tag, [run_dir])
    after = labkit.leftovers(tag, run_dir)
    assert not any(after.values()), after
    assert not [pid for pid in before["processes"] if labkit.alive(pid)]
