"""local-swap in the lab, part 2: deploys through the real `zdd-tui` commands, as in
test_lab_2_e2e.py, with `deploy.strategy: local-swap` and `proxy.image` the lab registry's proxy
image (tests/lab/images/proxy). Load through the LB at >= 200 req/s in every phase, every failed
request counted:

- setup, then a first deploy of the sample service onto hosts that run nothing (proxy + slot a);
- a deploy of v2 under load: 0 failed; slot b serves, v1 kept stopped;
- a version whose health never passes: halted, nothing switched, 0 failed;
- rollback to v1, kept on the hosts: 0 failed, and not one request from a host to the registry;
- a deploy of the minimal app (tests/lab/images/minimal: $PORT, /health, SIGTERM; nothing of
  zdd-tui), built by `zdd-tui build` like any project: 0 failed;
- 20 switches in a row on every host (the runtime's own switch) under keep-alive load: 0 failed;
- kill -9 of an app container under load: failed <= requests in flight at that instant;
- another local user on a host cannot change the proxy's upstream: not through its configuration
  directory or files, not through any port the host listens on, not through the Docker engine;
- a rebooted host (its dockerd stopped and started) serves the active version again, and the
  retained, stopped containers stay stopped.

The tests run in order and share one module-scoped setup; a failed step skips the rest (saying so).
They skip, saying why, while the host runtime lacks the local-swap methods (SwapHost).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import labimages
import labkit
from e2ekit import (
    LB_INTERVAL,
    PROXY_PORT,
    SLOT_PORTS,
    START_TIMEOUT,
    Swap,
    close_phase,
    local_swap,
    needs_swap_runtime,
)
from e2ekit import wait_for as _wait
from labkit import report
from loadgen import sample_or_minimal_body

BATCH = 2  # the first host alone, then the other two together: hosts never leave the LB
NOBODY = "setpriv --reuid=65534 --regid=65534 --clear-groups --"
HERE = Path(__file__).resolve().parent


pytestmark = [needs_swap_runtime, pytest.mark.steps]


@pytest.fixture(scope="module")
def swap(lab):
    # The canary is off: these deploys are about the switch, not the canary's judgement.
    with local_swap(lab, "localswap", Swap, batch_size=BATCH, start_timeout=START_TIMEOUT,
                    canary={"enabled": False}) as e:
        shutil.copytree(labimages.IMAGES_DIR / "minimal", e.project / "minimal")
        yield e


def _load(e: Swap, phase: str) -> None:
    e.start_load(phase, accept=sample_or_minimal_body)


# ------------------------------------------------------------------------------------------


def test_01_setup_and_first_deploy_installs_proxy_and_slot_a(swap):
    e = swap
    e.login_and_setup()
    v1 = e.build("v1", "v1")
    e.zdd("deploy", "--tag", v1, "--yes", label="deploy v1 (first: proxy installed)")
    for h in e.lab.hosts:
        proxy = e.proxy_container(h)
        assert proxy is not None, f"no container of {e.proxy_ref} on {h.name}"
        assert proxy["State"]["Status"] == "running", proxy["State"]
        assert proxy["HostConfig"]["RestartPolicy"]["Name"] == "always"
        assert proxy["HostConfig"]["NetworkMode"] == "host"
        assert e.active_slot(h) == "a"
        running = e.running(h)
        assert set(running) == {"a"} and running["a"]["tag"] == v1, running
        assert running["a"]["restart"] == "unless-stopped", running["a"]
        assert f"PORT={SLOT_PORTS['a']}" in running["a"]["env"], running["a"]["env"]
        assert not [x for x in running["a"]["env"] if x.startswith("ZDD_ADMIN")], running["a"]["env"]
        assert e.served(h)["version"] == v1
    _load(e, "steady on v1")
    time.sleep(3 * LB_INTERVAL)
    ph = close_phase(e, "build v2")
    assert set(ph.versions) == {v1} and len(ph.ids) == 3, (ph.versions, ph.ids)


def test_02_deploy_v2_under_load(swap):
    e = swap
    e.change_service()
    v1, v2 = e.tags["v1"], e.build("v2", "v2")
    close_phase(e, "deploy v2")
    e.zdd("deploy", "--tag", v2, "--yes", label="deploy v2 (under load)")
    ph = close_phase(e, "deploy v3 (unhealthy)")
    assert ph.versions.get(v1, 0) > 0 and ph.versions.get(v2, 0) > 0, ph.versions
    for h in e.lab.hosts:
        assert e.active_slot(h) == "b"
        assert e.served(h)["version"] == v2
        slots = {(c["slot"], c["tag"]): c["state"] for c in e.slots(h)}
        assert slots == {("a", v1): "exited", ("b", v2): "running"}, (h.name, slots)


def test_03_unhealthy_version_is_halted_and_nothing_switches(swap):
    e = swap
    df = e.project / "service" / "Dockerfile"
    original = df.read_text()
    df.write_text(original + "\n# lab: a broken version (its health check always fails)\nENV ZDD_FAIL_HEALTH=1\n")
    v2 = e.tags["v2"]
    v3 = e.build("v3", "v3: broken health")
    close_phase(e, "deploy v3 (unhealthy)")
    cp = e.zdd("deploy", "--tag", v3, "--yes", expect=3, label="deploy v3 (halted)")
    ph = close_phase(e, "rollback to v1")
    assert set(ph.versions) == {v2}, ph.versions  # the broken version never served
    assert "halt" in (cp.stdout + cp.stderr).lower()
    for h in e.lab.hosts:
        assert e.active_slot(h) == "b", h.name
        assert e.served(h)["version"] == v2
        tags = [c["tag"] for c in e.slots(h)]
        assert v3 not in tags, f"{h.name} keeps a container of the version that never got healthy: {tags}"
        assert set(e.running(h)) == {"b"}
    df.write_text(original)
    e.commit("v4: health fixed")


def test_04_rollback_to_a_retained_version_pulls_nothing(swap):
    e = swap
    v1 = e.tags["v1"]
    before = {h.name: {c["slot"]: c["id"] for c in e.slots(h) if c["tag"] == v1} for h in e.lab.hosts}
    mark = e.registry_log_size()
    cp = e.zdd("rollback", v1, "--yes", label="rollback to v1 (retained: no pull)")
    ph = close_phase(e, "build minimal")
    assert ph.versions.get(v1, 0) > 0
    pulls = e.host_pulls(mark)
    assert pulls == [], f"hosts asked the registry during a rollback to a kept version: {pulls[:5]}"
    for h in e.lab.hosts:
        assert e.active_slot(h) == "a"
        assert e.served(h)["version"] == v1
        running = e.running(h)
        assert running["a"]["tag"] == v1 and set(running) == {"a"}, running
    said = "present on the host" in (cp.stdout + cp.stderr)
    started_again = all(e.running(h)["a"]["id"] == before[h.name].get("a") for h in e.lab.hosts)
    report(f"rollback to a kept version: 0 registry requests from hosts; 'present on the host' said: {said}; "
           f"the kept container started again (same id): {started_again}")


def test_05_deploy_the_minimal_app(swap):
    e = swap
    e.config(build_context="minimal")
    minimal = e.build("minimal", "the minimal app (knows nothing of zdd-tui)")
    close_phase(e, "deploy minimal")
    e.zdd("deploy", "--tag", minimal, "--yes", label="deploy minimal (under load)")
    ph = close_phase(e, "20 switches")
    assert ph.versions.get(minimal, 0) > 0, ph.versions
    for h in e.lab.hosts:
        body = e.served(h)
        assert body.get("app") == "minimal" and body["version"] == minimal, body
        assert e.active_slot(h) == "b"
    time.sleep(1)
    ph = close_phase(e, "20 switches")
    assert set(ph.versions) == {minimal}, ph.versions


def test_06_twenty_switches_in_a_row_under_keepalive_load(swap):
    e = swap
    t0 = time.monotonic()
    cp = subprocess.run([sys.executable, str(HERE / "swapdriver.py"), "switches", e.tags["v1"], "20"],
                        cwd=e.project, env=e.env(), capture_output=True, text=True, timeout=600)
    e.timings["20 switches on every host"] = time.monotonic() - t0
    assert cp.returncode == 0, cp.stderr[-3000:]
    done = json.loads(cp.stdout.strip().splitlines()[-1])
    ph = close_phase(e, "steady before kill -9")
    assert ph.versions.get(e.tags["v1"], 0) > 0 and ph.versions.get(e.tags["minimal"], 0) > 0, ph.versions
    took = sorted(t for d in done.values() for t in d["switch_seconds"])
    report(f"switches: {len(took)} on {len(done)} hosts (the runtime's switch: rename, until the proxy says so): "
           f"median {took[len(took) // 2]:.2f} s, max {took[-1]:.2f} s")
    for h in e.lab.hosts:
        assert len(done[h.name]["switch_seconds"]) == 20
        assert done[h.name]["final"] == "b" == e.active_slot(h)
        assert e.served(h)["version"] == e.tags["minimal"]


def _second_of_day(t: str | time.struct_time) -> int:
    if isinstance(t, str):
        hh, mm, ss = (int(x) for x in t.split(":"))
        return hh * 3600 + mm * 60 + ss
    return t.tm_hour * 3600 + t.tm_min * 60 + t.tm_sec


def test_07_kill_9_of_the_app_container_under_load(swap):
    e = swap
    h = e.lab.hosts[0]
    app = e.running(h)["b"]
    port = SLOT_PORTS["b"]
    close_phase(e, "kill -9")
    in_flight = e.in_flight(h, port)
    os.kill(app["pid"], signal.SIGKILL)  # the container's process, from the root PID namespace
    killed = time.localtime()
    in_flight = max(in_flight, e.in_flight(h, port))
    _wait("the killed container restarted", lambda: e.running(h).get("b", {}).get("restarts", 0) >= 1)
    _wait("the host serving again", lambda: e.served(h)["version"] == e.tags["minimal"])
    time.sleep(2)
    ph = e.load.phase("another user")
    report("load " + ph.summary())
    report(f"kill -9 on {h.name}: {in_flight} request(s) in flight to the slot at that instant, "
           f"{ph.failed} failed")
    assert e.load.error is None, e.load.error
    assert ph.rate >= 200, ph.rate
    # A sample of in-flight requests around the kill can miss some (it is not the same instant),
    # so the failures speak for themselves: each is a request the kill cut off, answered within
    # a second or two of it (the failures are stamped to the second); none later, since new
    # requests wait in the proxy's retry while the container restarts.
    at_kill = [f for f in ph.failures if abs(_second_of_day(f[:8]) - _second_of_day(killed)) <= 2]
    assert ph.failed == len(at_kill), (time.strftime("%H:%M:%S", killed), ph.failures)


def test_08_another_local_user_cannot_change_the_upstream(swap):
    e = swap
    lab = e.lab
    h = lab.hosts[0]
    proxy = e.proxy_container(h)
    assert proxy is not None
    slot = e.active_slot(h)
    version = e.served(h)["version"]
    # 1. its configuration: every bind mount of the proxy is read-only inside, and outside only
    # root may read or change it
    mounts = [m for m in proxy.get("Mounts") or [] if m.get("Type") == "bind"]
    assert mounts, proxy.get("Mounts")
    files: list[str] = []
    for m in mounts:
        assert m["RW"] is False, m
        src = m["Source"]
        found = lab.ssh(h, f"find {shlex.quote(src)} -maxdepth 3").stdout.split()
        files += found
        for target in found:
            q = shlex.quote(target)
            if lab.ssh(h, f"test -d {q}", check=False).returncode == 0:
                attempt = f"touch {q}/.zdd-lab-nobody"
            else:
                attempt = f"sh -c 'echo changed >> {q}'"
            cp = lab.ssh(h, f"{NOBODY} {attempt}", check=False)
            assert cp.returncode != 0, f"another user could write {target}"
            assert "Permission denied" in cp.stderr, cp.stderr
    digest_before = lab.ssh(h, "sha256sum " + " ".join(shlex.quote(f) for f in files) + " 2>/dev/null; true").stdout

    # 2. any port the host listens on: Traefik's REST provider (off) and its API (read-only)
    evil = json.dumps({"http": {"routers": {"app": {"rule": "PathPrefix(`/`)", "service": "evil",
                                                    "entryPoints": ["web"]}},
                                "services": {"evil": {"loadBalancer": {"servers": [{"url": "http://127.0.0.1:9"}]}}}}})
    listening = labkit.run(["nsenter", f"--net=/run/netns/{h.netns}", "ss", "-Htln"]).stdout.splitlines()
    targets = set()
    for line in listening:
        local = line.split()[3]
        addr, port = local.rsplit(":", 1)
        addr = addr.strip("[]")
        if addr in ("0.0.0.0", "*"):
            targets.update({("127.0.0.1", port), (h.ip, port)})
        elif ":" not in addr:
            targets.add((addr, port))
    assert ("127.0.0.1", str(PROXY_PORT)) in targets, targets
    answers = {}
    for addr, port in sorted(targets):
        for method, path in (("PUT", "/api/providers/rest"), ("POST", "/api/providers/rest"),
                             ("PUT", "/api/http/routers/app@file"), ("DELETE", "/api/http/routers/app@file")):
            cp = lab.ssh(h, f"{NOBODY} curl -s -o /dev/null -w '%{{http_code}}' --max-time 2 -X {method} "
                            f"-H 'Content-Type: application/json' --data-binary @- http://{addr}:{port}{path}",
                         check=False, input=evil)
            answers[f"{method} {addr}:{port}{path}"] = cp.stdout.strip() or f"exit {cp.returncode}"
    # 3. the Docker engine: its socket is root's
    cp = lab.ssh(h, f"{NOBODY} docker ps", check=False)
    assert cp.returncode != 0 and "permission denied" in cp.stderr.lower(), cp.stderr
    time.sleep(1)  # a change would be applied within ~0.3 s
    assert not [k for k, v in answers.items() if v.startswith("2")], answers
    assert e.active_slot(h) == slot
    for _ in range(20):
        assert e.served(h)["version"] == version
    digest_after = lab.ssh(h, "sha256sum " + " ".join(shlex.quote(f) for f in files) + " 2>/dev/null; true").stdout
    assert digest_after == digest_before
    report(f"another user on {h.name}: {len(files)} config paths unwritable, {len(answers)} change attempts on "
           f"{len(targets)} listening addresses answered {sorted(set(answers.values()))}, docker refused")
    ph = close_phase(e, "reboot")
    assert ph.failed == 0


def test_09_a_rebooted_host_serves_the_active_version_and_kept_containers_stay_stopped(swap):
    e = swap
    h = e.lab.hosts[1]
    ph = e.load.phase("end")
    report("load " + ph.summary())
    assert ph.failed == 0, ph.failures
    e.load.stop()  # the LB sees the host go down while it reboots: not counted
    slot = e.active_slot(h)
    version = e.served(h)["version"]
    before = {c["name"]: c["state"] for c in e.slots(h)}
    stopped = sorted(n for n, s in before.items() if s == "exited")
    assert stopped, f"expected kept, stopped containers on {h.name}: {before}"
    t0 = time.monotonic()
    seconds = e.lab.reboot_engine(h)
    _wait("the host serving its active version after the reboot", lambda: e.served(h)["version"] == version)
    report(f"reboot of {h.name}: dockerd answered after {seconds:.1f} s, serving {version} again after "
           f"{time.monotonic() - t0:.1f} s")
    assert e.active_slot(h) == slot
    after = {c["name"]: c["state"] for c in e.slots(h)}
    assert after == before, (before, after)
    proxy = e.proxy_container(h)
    assert proxy is not None and proxy["State"]["Status"] == "running"
    # and the LB sends to it again
    _load(e, "after the reboot")
    _wait("the LB spreading over 3 hosts again", lambda: len(e.load.current.ids) == 3, timeout=30)
    ph = close_phase(e, "end")
    e.load.stop()
    assert ph.failed == 0


