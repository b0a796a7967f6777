"""End to end through the real product commands against the lab (only the API URL differs from
real use): the sandbox API in lab mode (the lab hosts as external droplets, the lab registry as the
registry, the sandbox LB proxying to the lab hosts), `zdd-tui setup` over SSH, `zdd-tui build
--push` on the builder engine, `zdd-tui deploy` twice, a failing version halted and restored,
`zdd-tui rollback`; >= 200 req/s through the LB during every phase, 0 failed requests; no token,
registry password or private key on any host, in any container's config or in any process list.

The tests run in order and share one module-scoped setup; a failed step skips the rest (saying so).
"""

from __future__ import annotations

import base64
import json
import os
import re
import statistics
import subprocess
import time
from pathlib import Path

import pytest

import labkit
from e2ekit import E2E, LB_INTERVAL, REGISTRY_NAME, close_phase, lb_drain, secrets_of
from labkit import report
from loadgen import SecretWatcher

pytestmark = pytest.mark.steps


@pytest.fixture(scope="module")
def e2e(lab):
    with lb_drain(lab, "e2e") as e:
        yield e


# ------------------------------------------------------------------------------------------


def test_01_credentials_and_setup(e2e):
    e = e2e
    # the DO token (the sandbox's throwaway) into the credential store, over stdin, checked against
    # and bound to the sandbox's API (the only URL it is then sent to); setup: token check, the
    # lab's key imported into the keyring and uploaded, droplets/LB/registry found (the lab made
    # them), hosts bootstrapped over SSH with their host keys pinned
    cp = e.login_and_setup(label="setup (first)")
    events = [json.loads(x) for x in cp.stdout.splitlines() if x.startswith("{")]
    result = [x for x in events if x.get("kind") == "result"]
    assert result and all(v in ("exists", "created", "ok", "done") for v in result[-1]["steps"].values()), result
    # every host pinned in the operator's known_hosts with the key the lab generated for it
    kh = (e.work / "xdg-state" / "zdd-tui" / "known_hosts").read_text()
    for h in e.lab.hosts:
        assert (h.dir / "ssh_host_ed25519_key.pub").read_text().split()[1] in kh, h.name
        # setup made the state directory on each host (<ssh.state_dir>/<app>, in the host's own /var/lib/zdd)
        app_dir = h.dir / "varlibzdd" / "app"
        assert app_dir.is_dir(), f"setup made no state directory on {h.name}"
        assert app_dir.stat().st_mode & 0o077 == 0, oct(app_dir.stat().st_mode)
    # a second run creates nothing
    cp = e.zdd("setup", "--yes", "--json", label="setup (again)")
    result = [json.loads(x) for x in cp.stdout.splitlines() if x.startswith("{") and '"result"' in x]
    assert result and "created" not in result[-1]["steps"].values(), result


def test_02_build_and_push_v1(e2e):
    e = e2e
    e.tags["v1"] = e.commit("v1")
    cp = e.zdd("build", "--push", "--build-arg", f"BASE={e.lab.base_image}", label="build --push v1")
    assert e.tags["v1"] in cp.stdout
    _assert_registry_has(e, ["latest", e.tags["v1"]])


def _assert_registry_has(e: E2E, tags: list[str]) -> None:
    env = e.lab.builder_env()
    for t in tags:
        ref = f"{e.lab.registry_addr}/{REGISTRY_NAME}/app:{t}"
        cp = labkit.run(["docker", "-H", e.lab.builder.docker_host, "manifest", "inspect", "--insecure", ref],
                        check=False, env=env)
        assert cp.returncode == 0, f"{ref} not in the registry: {cp.stderr}"


def test_03_deploy_v1_to_three_hosts(e2e):
    e = e2e
    # The hosts run nothing yet: a first deploy onto an empty fleet.
    e.zdd("deploy", "--tag", e.tags["v1"], "--yes", label="deploy v1 (first, no load)")
    assert set(e.host_versions().values()) == {e.tags["v1"]}, e.host_versions()
    # from here on: load through the LB, and a watch on every process list
    e.watch = SecretWatcher(secrets_of(e), [h.netns for h in e.lab.hosts]).start()
    e.start_load("steady on v1")
    time.sleep(3 * LB_INTERVAL)
    ph = close_phase(e, "build v2")
    assert set(ph.versions) == {e.tags["v1"]}, ph.versions
    assert len(ph.ids) == 3, f"expected the LB to spread over 3 instances, saw {len(ph.ids)}"
    # the sandbox LB health-checks the lab hosts from the bridge address, at the configured interval
    for h in e.lab.hosts:
        stats = json.loads(e.lab.ssh(h, "curl -sf http://127.0.0.1:9090/admin/stats").stdout)
        checkers = {c["source"]: c for c in stats["health_checkers"]}
        assert e.lab.bridge_ip in checkers, stats
        c = checkers[e.lab.bridge_ip]
        assert c["consecutive_ok"] >= 2 and c["last_age_seconds"] <= 2 * LB_INTERVAL, c
        # and the admin endpoints are not reachable from outside the host
        with pytest.raises(OSError):
            labkit.http_get(h.ip, 9090, "/admin/stats", timeout=2)
        assert labkit.http_get(h.ip, 8080, "/admin/stats", timeout=2)[0] == 404


def test_04_deploy_v2_under_load(e2e):
    e = e2e
    e.change_service()
    e.build("v2", "v2")
    _assert_registry_has(e, [e.tags["v2"]])
    close_phase(e, "deploy v2")
    e.zdd("deploy", "--tag", e.tags["v2"], "--yes", label="deploy v2 (under load)")
    ph = close_phase(e, "build v3")
    assert set(e.host_versions().values()) == {e.tags["v2"]}, e.host_versions()
    assert ph.versions.get(e.tags["v2"], 0) > 0 and ph.versions.get(e.tags["v1"], 0) > 0, ph.versions


def test_05_failing_v3_is_halted_and_restored(e2e):
    e = e2e
    df = e.project / "service" / "Dockerfile"
    df.write_text(df.read_text() + "\n# lab: a broken version (its health check always fails)\nENV ZDD_FAIL_HEALTH=1\n")
    e.build("v3", "v3: broken health")
    close_phase(e, "deploy v3 (halted)")
    cp = e.zdd("deploy", "--tag", e.tags["v3"], "--yes", expect=3, label="deploy v3 (halted, restored)")
    ph = close_phase(e, "rollback to v1")
    versions = e.host_versions()
    assert set(versions.values()) == {e.tags["v2"]}, versions
    assert set(ph.versions) == {e.tags["v2"]}, ph.versions  # the broken version never served
    assert "halt" in (cp.stdout + cp.stderr).lower()


def test_06_rollback_to_v1(e2e):
    e = e2e
    e.zdd("rollback", e.tags["v1"], "--yes", label="rollback to v1 (under load)")
    ph = close_phase(e, "steady on v1 after rollback")
    assert set(e.host_versions().values()) == {e.tags["v1"]}, e.host_versions()
    assert ph.versions.get(e.tags["v1"], 0) > 0
    # the engine's state (journal, lock) went to the hosts' state directories
    assert any(os.listdir(h.dir / "varlibzdd" / "app") for h in e.lab.hosts), "no journal/lock on any host"
    time.sleep(2 * LB_INTERVAL)
    ph = close_phase(e, "end")
    assert set(ph.versions) == {e.tags["v1"]}, ph.versions
    e.load.stop()


def _private_seed(path: Path) -> bytes:
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_ssh_private_key(path.read_bytes(), password=None)
    return key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                             serialization.NoEncryption())


def test_07_no_secret_on_any_host(e2e):
    e = e2e
    lab = e.lab
    seed = _private_seed(lab.client_key)
    needles = {k: v.encode() for k, v in secrets_of(e).items() if k != "private key armour"}
    needles["private key (raw)"] = seed
    needles["private key (hex)"] = seed.hex().encode()
    needles["private key (base64)"] = base64.b64encode(seed).rstrip(b"=")
    # Any armoured private key block, outside the image layers (Debian's libgnutls carries self-test
    # keys): in the host's own dirs, docker's metadata and each container's writable layer.
    armour = re.compile(rb"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----\r?\n(?:[A-Za-z0-9+/=]{60,76}\r?\n){2,}")
    # a canary proves the scans can fail: planted in a host's /tmp and in one process's argv
    canary = f"zdd-lab-canary-{os.urandom(8).hex()}"
    needles["canary"] = canary.encode()
    (lab.hosts[0].dir / "tmp" / "canary.txt").write_text(canary)
    hits = []
    scanned = 0
    for h in lab.hosts:
        uppers = lab.ssh(h, "docker ps -aq | xargs -r docker inspect "
                            "--format '{{.GraphDriver.Data.UpperDir}}'").stdout.split()
        layers = str(h.engine.dir / "data" / "overlay2") + os.sep
        for root in h.fs_dirs:
            for dirpath, _dirs, files in os.walk(root):
                in_image_layer = dirpath.startswith(layers) and not any(dirpath.startswith(u) for u in uppers)
                for f in files:
                    p = os.path.join(dirpath, f)
                    try:
                        if not os.path.isfile(p) or os.path.islink(p):
                            continue
                        with open(p, "rb") as fh:
                            data = fh.read(64 * 1024 * 1024)
                    except OSError:
                        continue
                    scanned += 1
                    for name, n in needles.items():
                        if n in data:
                            hits.append(f"{name} in {p}")
                    if not in_image_layer and b"PRIVATE KEY-----" in data and armour.search(data):
                        hits.append(f"an armoured private key in {p}")
        # docker inspect: env, args, labels of every container there
        cp = lab.ssh(h, "docker ps -aq | xargs -r docker inspect")
        for name, n in needles.items():
            if n.decode(errors="ignore") in cp.stdout:
                hits.append(f"{name} in docker inspect on {h.name}")
    assert e.watch is not None
    e.watch.stop()
    e.watch.secrets["canary"] = canary.encode()
    p = subprocess.Popen(["sh", "-c", "sleep 5", canary])
    try:
        # Until the child has exec'd, its argv is still this process's (a fork's copy).
        deadline = time.monotonic() + 5
        while canary.encode() not in Path(f"/proc/{p.pid}/cmdline").read_bytes() and time.monotonic() < deadline:
            time.sleep(0.01)
        e.watch.sample()
    finally:
        p.kill()
        p.wait()
    assert [x for x in e.watch.hits if x.startswith("canary")], "the process-list watch missed the canary"
    assert [x for x in hits if x.startswith("canary in ")], "the file scan missed the canary"
    (lab.hosts[0].dir / "tmp" / "canary.txt").unlink()
    e.watch.hits = [x for x in e.watch.hits if not x.startswith("canary")]
    hits = [x for x in hits if not x.startswith("canary")]
    report(f"secret scan: {scanned} files on {len(lab.hosts)} hosts, {e.watch.samples} process-list samples, "
           f"{len(e.watch.secrets)} needles; hits: {len(hits) + len(e.watch.hits)}")
    assert scanned > 1000
    assert e.watch.samples > 10
    assert not e.watch.hits, e.watch.hits
    assert not hits, hits
    # and no docker login left behind on a host
    for h in lab.hosts:
        cfg = h.dir / "root" / ".docker" / "config.json"
        assert not cfg.exists() or lab.registry_password not in cfg.read_text()


def test_08_figures(e2e):
    """Image size and container start-to-healthy time, measured here; printed, never asserted on timing."""
    e = e2e
    lab = e.lab
    ref = f"{lab.registry_addr}/{REGISTRY_NAME}/app:{e.tags['v1']}"
    size = int(lab.builder.docker("image", "inspect", "--format", "{{.Size}}", ref).stdout.strip())
    manifest = json.loads(labkit.run(["docker", "-H", lab.builder.docker_host, "manifest", "inspect", "--insecure",
                                      ref], env=lab.builder_env()).stdout)
    compressed = sum(int(layer["size"]) for layer in manifest.get("layers", []))
    h = lab.hosts[0]
    times = []
    for i in range(3):
        name = f"zdd-lab-startup-{i}"
        port, admin = 18100 + i, 19100 + i
        t0 = time.monotonic()
        lab.ssh(h, f"docker run -d --name {name} --network host -e ZDD_HOST={h.ip} -e ZDD_PORT={port} "
                   f"-e ZDD_ADMIN_PORT={admin} {ref}")
        try:
            deadline = t0 + 60
            while time.monotonic() < deadline:
                try:
                    if labkit.http_get(h.ip, port, "/health", timeout=1)[0] == 200:
                        break
                except OSError:
                    pass
                time.sleep(0.02)
            else:
                pytest.fail("the service did not become healthy within 60 s")
            times.append(time.monotonic() - t0)
        finally:
            lab.ssh(h, f"docker rm -f {name}", check=False)
    lines = [
        "# lab figures (measured by tests/lab; printed by the lab run, never asserted on)",
        "",
        (f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on this machine (2 cores), "
         "lab hosts in network namespaces."),
        "",
        (f"- service image ({e.tags['v1']}, base: debootstrap bookworm minbase + python3 + python3-aiohttp): "
         f"{size / 1e6:.1f} MB uncompressed (docker image inspect .Size), {compressed / 1e6:.1f} MB compressed "
         f"in the registry (sum of the manifest's layers; the service's own layers are a few kB)"),
        "- container start to healthy (docker run over SSH -> GET /health 200 from the root namespace), 3 runs: "
        + ", ".join(f"{t:.2f} s" for t in times) + f"; median {statistics.median(times):.2f} s",
        "",
        "Load through the sandbox LB during the lab's phases:",
        "",
    ]
    if e.load:
        lines += ["    " + ph.summary() for ph in e.load.phases if ph.name != "end"]
    lines += ["", "Command durations:", ""] + [f"    {k:<40} {v:7.1f} s" for k, v in e.timings.items()]
    text = "\n".join(lines) + "\n"
    report(text)
