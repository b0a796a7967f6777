"""The lab's end-to-end harness: a project driven through the real `zdd-tui` commands against the
lab (only the API URL differs from real use): the sandbox API in lab mode (the lab hosts as
external droplets, the lab registry as the registry, the sandbox LB proxying to the lab hosts),
the operator's environment (the lab keyring, a throwaway XDG state, the builder engine), load
phases through the LB."""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import pytest
import tiers

import labimages
import labkit
from labkit import report
from loadgen import LoadGenerator, SecretWatcher

REPO = Path(__file__).resolve().parents[2]
CONTEXT = "lab"
REGISTRY_NAME = "zdd-lab"
LB_INTERVAL = 3
LOAD_RATE = 250.0  # req/s through the LB (>= 200 required)
# The sample service starts in ~0.5 s here, but took 18-20 s on this 2-core machine at a load
# average of 20: a tighter bound halts a good version.
START_TIMEOUT = 40
# local-swap in the lab: the proxy's ports on every host (zdd.yaml's proxy section)
PROXY_PORT = 9180
SLOT_PORTS = {"a": 8081, "b": 8082}
WEB_PORT = 8080


def zdd_argv() -> list[str]:
    exe = shutil.which("zdd-tui")
    return [exe] if exe else [sys.executable, "-m", "zdd_tui"]


class E2E:
    def __init__(self, lab: labkit.Lab, workdir: Path):
        self.lab = lab
        self.work = workdir
        self.project = workdir / "project"
        self.sandbox_dir = workdir / "sandbox"
        self.sandbox: subprocess.Popen | None = None
        self.info: dict = {}
        self.token = ""
        self.tags: dict[str, str] = {}  # v1/v2/v3 -> sha tag
        self.load: LoadGenerator | None = None
        self.watch: SecretWatcher | None = None
        self.timings: dict[str, float] = {}

    # environment of the operator's zdd-tui: the lab keyring, a throwaway HOME/XDG (known_hosts
    # lands there), the builder engine, and no credentials in the environment.
    def env(self) -> dict[str, str]:
        env = self.lab.env(**self.lab.keyring_env)
        env["XDG_STATE_HOME"] = str(self.work / "xdg-state")
        env["XDG_CACHE_HOME"] = str(self.work / "xdg-cache")
        env["DOCKER_HOST"] = self.lab.builder.docker_host
        for k in ("DIGITALOCEAN_TOKEN", "ZDD_SSH_PRIVATE_KEY", "ZDD_KNOWN_HOSTS", "DOCKER_CONFIG"):
            env.pop(k, None)
        return env

    def zdd(self, *args: str, timeout: float = 600, expect: int | None = 0, label: str | None = None,
            stdin: str | None = None) -> subprocess.CompletedProcess:
        t0 = time.monotonic()
        cp = subprocess.run(zdd_argv() + list(args), cwd=self.project, env=self.env(), capture_output=True,
                            text=True, timeout=timeout, input=stdin)
        dt = time.monotonic() - t0
        name = label or " ".join(args[:2])
        self.timings[name] = dt
        print(f"$ zdd-tui {' '.join(args)}  -> exit {cp.returncode} in {dt:.1f} s\n{cp.stdout[-6000:]}\n"
              f"--- stderr\n{cp.stderr[-4000:]}", flush=True)
        if expect is not None and cp.returncode != expect:
            raise AssertionError(f"zdd-tui {' '.join(args)} exited {cp.returncode}, expected {expect}:\n"
                                 f"{cp.stdout[-3000:]}\n{cp.stderr[-3000:]}")
        return cp

    def git(self, *args: str) -> str:
        env = {**os.environ, "GIT_AUTHOR_NAME": "zdd lab", "GIT_AUTHOR_EMAIL": "lab@zdd.invalid",
               "GIT_COMMITTER_NAME": "zdd lab", "GIT_COMMITTER_EMAIL": "lab@zdd.invalid"}
        return labkit.run(["git", "-C", str(self.project), *args], env=env).stdout.strip()

    def commit(self, message: str) -> str:
        self.git("add", "-A")
        self.git("commit", "-q", "-m", message)
        return "sha-" + self.git("rev-parse", "--short=7", "HEAD")

    def change_service(self) -> None:
        """A change to the service's files: the next commit builds a new version."""
        (self.project / "service" / "zdd_service" / "lab_note.txt").write_text("v2: a change for the lab\n")

    def build(self, name: str, message: str) -> str:
        """Commit the project, `zdd-tui build --push` it; its tag, remembered as `name`."""
        self.tags[name] = self.commit(message)
        self.zdd("build", "--push", "--build-arg", f"BASE={self.lab.base_image}", label=f"build --push {name}")
        return self.tags[name]

    def login_and_setup(self, label: str = "setup") -> subprocess.CompletedProcess:
        """The sandbox's token into the credential store (over stdin, bound to the sandbox's API),
        then `zdd-tui setup` with the lab's key and the hosts' keys accepted; setup's output."""
        self.zdd("login", "--token-stdin", "--context", CONTEXT, "--api-url", self.info["api_url"], stdin=self.token,
                 label="login")
        return self.zdd("setup", "--yes", "--accept-new-host-keys", "--import-key", str(self.lab.client_key), "--json",
                        label=label)

    def start_load(self, first_phase: str, **kw) -> LoadGenerator:
        """Load through the LB at LOAD_RATE from now on (kw: the rest of LoadGenerator's settings)."""
        self.load = LoadGenerator(f"{self.info['lb_url'].rstrip('/')}/", rate=LOAD_RATE, first_phase=first_phase,
                                  **kw).start()
        return self.load

    def host_versions(self) -> dict[str, str]:
        """What each host serves, asked directly (not through the LB)."""
        out = {}
        for h in self.lab.hosts:
            try:
                status, body = labkit.http_get(h.ip, 8080, "/", timeout=3)
                out[h.name] = json.loads(body).get("version") if status == 200 else f"HTTP {status}"
            except OSError as exc:
                out[h.name] = f"down ({type(exc).__name__})"
        return out

    def host_images(self) -> dict[str, str]:
        out = {}
        for h in self.lab.hosts:
            cp = self.lab.ssh(h, "docker inspect --format '{{.Config.Image}}' app 2>/dev/null || true")
            out[h.name] = cp.stdout.strip()
        return out


def need_product() -> None:
    missing = []
    for mod in ("zdd_tui.secrets", "zdd_tui.hosts.runtime", "zdd_tui.setup.steps", "zdd_tui.images.build",
                "zdd_tui.rollout.engine", "zdd_tui.sandbox.supervisor", "zdd_tui.sandbox.registry"):
        try:
            __import__(mod)
        except Exception as exc:  # noqa: BLE001
            missing.append(f"{mod} ({type(exc).__name__}: {exc})")
    if missing:
        pytest.fail("the product modules the lab drives are not importable: " + "; ".join(missing), pytrace=False)


def make_project(e: E2E) -> None:
    """A small git project: the service (copied from service/) and zdd.yaml for the lab."""
    e.project.mkdir()
    shutil.copytree(REPO / "service", e.project / "service",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "tests", ".pytest_cache"))
    labkit.run(["git", "init", "-q", "-b", "main", str(e.project)])
    (e.project / ".gitignore").write_text("__pycache__/\n")


def write_config(e: E2E, *, strategy: str = "lb-drain", proxy_image: str | None = None, batch_size: int = 1,
                 build_context: str = "service", start_timeout_seconds: int = 20,
                 canary: dict | None = None) -> None:
    """zdd.yaml for the lab. strategy is always written: the product's default is not what a
    test of one strategy wants to depend on. `canary` is the deploy.canary section (unset: the
    product's default, which turns the canary on for a local-swap fleet of 3, the lab's)."""
    lab = e.lab
    section = "" if canary is None else "  canary:\n" + "".join(
        f"    {k}: {str(v).lower() if isinstance(v, bool) else v}\n" for k, v in canary.items())
    names = [h.name for h in lab.hosts]
    proxy = "" if proxy_image is None else (
        f"proxy:\n  image: \"{proxy_image}\"\n  port: 9180\n  slot_a_port: 8081\n  slot_b_port: 8082\n")
    cfg = f"""# zdd.yaml for the lab: real SSH hosts and registry; the DO API and LB are the sandbox's.
app: app
context: {CONTEXT}
runtime: ssh
digitalocean:
  api_url: {e.info['api_url']}
  region: nyc3
droplets:
  tag: zdd-app
  names: [{', '.join(names)}]
load_balancer:
  name: zdd-app-lb
  health_check:
    protocol: http
    path: /health
    check_interval_seconds: {LB_INTERVAL}
    response_timeout_seconds: 3
    unhealthy_threshold: 2
    healthy_threshold: 2
registry:
  name: {REGISTRY_NAME}
  repository: app
  server: "{lab.registry_addr}"
service:
  port: 8080
  admin_port: 9090
build:
  dockerfile: {build_context}/Dockerfile
  context: {build_context}
deploy:
  strategy: {strategy}
  batch_size: {batch_size}
  start_timeout_seconds: {start_timeout_seconds}
  stop_grace_seconds: 10
  margin_seconds: 5
{section}{proxy}ssh:
  user: root
  state_dir: /var/lib/zdd
  connect_timeout_seconds: 10
"""
    (e.project / "zdd.yaml").write_text(cfg)


def start_sandbox(e: E2E, *, strategy: str = "lb-drain", proxy_image: str | None = None,
                  batch_size: int = 1) -> None:
    lab = e.lab
    e.sandbox_dir.mkdir(mode=0o700)
    spec = {
        "hosts": 0,
        "external": [{"name": h.name, "ip": h.ip} for h in lab.hosts],
        "registry": {"url": f"http://{lab.registry_addr}", "name": REGISTRY_NAME, "username": lab.registry_user,
                     "password_env": "ZDD_LAB_REGISTRY_PASSWORD"},
    }
    spec_path = e.work / "lab-spec.json"
    spec_path.write_text(json.dumps(spec))
    env = e.env()
    env["ZDD_LAB_REGISTRY_PASSWORD"] = lab.registry_password
    log = open(e.work / "sandbox.log", "ab")
    t0 = time.monotonic()
    e.sandbox = subprocess.Popen(
        [*zdd_argv(), "sandbox", "up", "--json", "--state-dir", str(e.sandbox_dir), "--hosts", "0",
         "--lab-spec", str(spec_path), "--lb-interval", str(LB_INTERVAL), "--lb-timeout", "3",
         "--lb-unhealthy", "2", "--lb-healthy", "2"],
        cwd=e.work, env=env, stdout=subprocess.PIPE, stderr=log, start_new_session=True)
    log.close()
    lab.procs.append(("sandbox", e.sandbox))
    line = readline(e.sandbox, 90)
    if not line:
        raise RuntimeError(f"`zdd-tui sandbox up` gave no JSON line (exit {e.sandbox.poll()}): "
                           f"{(e.work / 'sandbox.log').read_text()[-3000:]}")
    e.info = json.loads(line)
    e.timings["sandbox up (lab mode)"] = time.monotonic() - t0
    e.token = (e.sandbox_dir / "token").read_text().strip()
    write_config(e, strategy=strategy, proxy_image=proxy_image, batch_size=batch_size)


def readline(p: subprocess.Popen, timeout: float) -> str:
    import selectors

    assert p.stdout is not None
    sel = selectors.DefaultSelector()
    sel.register(p.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    buf = b""
    while time.monotonic() < deadline and p.poll() is None:
        if sel.select(timeout=0.5):
            chunk = os.read(p.stdout.fileno(), 65536)
            if not chunk:
                break
            buf += chunk
            if b"\n" in buf:
                return buf.split(b"\n", 1)[0].decode()
    return ""


def stop_sandbox(e: E2E) -> None:
    p = e.sandbox
    if p is None or p.poll() is not None:
        return
    os.kill(p.pid, signal.SIGTERM)
    try:
        p.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.kill(p.pid, signal.SIGKILL)
        p.wait(timeout=10)


def close_phase(e: E2E, next_phase: str, *, injected_ok: bool = False):
    """End the current load phase (and start the next); every phase: >= 200 req/s, 0 failed.
    A version's own injected 500s are counted apart, and allowed only where a test deploys one."""
    ph = e.load.phase(next_phase)
    report("load " + ph.summary())
    assert e.load.error is None, e.load.error
    assert ph.sent > 0
    assert ph.rate >= 200, f"{ph.name}: only {ph.rate:.0f} req/s"
    assert ph.failed == 0, f"{ph.name}: {ph.failed} of {ph.sent} requests failed: {ph.failures}"
    assert injected_ok or ph.injected == 0, f"{ph.name}: {ph.injected} injected 500s"
    return ph


def secrets_of(e: E2E) -> dict[str, str]:
    lab = e.lab
    return {
        "DO token": e.token,
        "registry password": lab.registry_password,
        "registry basic auth": base64.b64encode(f"{lab.registry_user}:{lab.registry_password}".encode()).decode(),
        "private key armour": "PRIVATE KEY-----",
        "private key body": key_body_line(lab.client_key),
    }


def key_body_line(path: Path) -> str:
    lines = [x for x in path.read_text().splitlines() if x and not x.startswith("-----")]
    return lines[len(lines) // 2]


# ---- local-swap ---------------------------------------------------------------------------


def missing_swap_methods() -> list[str]:
    """SwapHost's methods the SSH host runtime lacks (the local-swap modules skip while any do)."""
    try:
        from zdd_tui.hosts.runtime import DockerSSHRuntime
        from zdd_tui.rollout.interfaces import SwapHost
    except Exception:  # noqa: BLE001 (need_product() reports an import failure properly)
        return []
    wanted = sorted(n for n, v in vars(SwapHost).items() if not n.startswith("_") and callable(v))
    return [m for m in wanted if not hasattr(DockerSSHRuntime, m)]


needs_swap_runtime = pytest.mark.skipif(
    bool(missing_swap_methods()),
    reason="the SSH host runtime does not implement local-swap yet (DockerSSHRuntime lacks SwapHost's "
           + ", ".join(missing_swap_methods()) + ")")


class Swap(E2E):
    """The e2e harness for local-swap, plus what it leaves on a host, read over SSH."""

    def __init__(self, lab: labkit.Lab, workdir: Path, *, batch_size: int, start_timeout: int,
                 canary: dict | None):
        super().__init__(lab, workdir)
        self.proxy_ref = ""
        self.batch_size = batch_size
        self.start_timeout = start_timeout
        self.canary = canary

    def config(self, *, build_context: str = "service") -> None:
        write_config(self, strategy="local-swap", proxy_image=self.proxy_ref, batch_size=self.batch_size,
                     build_context=build_context, start_timeout_seconds=self.start_timeout, canary=self.canary)

    def containers(self, h: labkit.Host) -> list[dict]:
        """`docker inspect` of every container on the host."""
        out = self.lab.ssh(h, "docker ps -aq | xargs -r docker inspect").stdout.strip()
        return json.loads(out) if out else []

    def slots(self, h: labkit.Host) -> list[dict]:
        """The app's slot containers: name, slot, tag, port, state, id, pid, restart policy and
        count, env, when it started."""
        out = []
        for c in self.containers(h):
            labels = c["Config"].get("Labels") or {}
            if labels.get("zdd.app") != "app" or labels.get("zdd.slot") not in SLOT_PORTS:
                continue
            out.append({"name": c["Name"].lstrip("/"), "slot": labels["zdd.slot"], "tag": labels.get("zdd.tag"),
                        "port": labels.get("zdd.port"), "state": c["State"]["Status"], "id": c["Id"],
                        "pid": c["State"].get("Pid"), "restart": c["HostConfig"]["RestartPolicy"]["Name"],
                        "restarts": c.get("RestartCount", 0), "env": c["Config"].get("Env") or [],
                        "started": c["State"].get("StartedAt")})
        return out

    def running(self, h: labkit.Host) -> dict[str, dict]:
        """slot -> its running container."""
        return {c["slot"]: c for c in self.slots(h) if c["state"] == "running"}

    def proxy_container(self, h: labkit.Host) -> dict | None:
        found = [c for c in self.containers(h) if c["Config"]["Image"] == self.proxy_ref]
        assert len(found) <= 1, [c["Name"] for c in found]
        return found[0] if found else None

    def active_slot(self, h: labkit.Host) -> str | None:
        """The slot the proxy itself says it routes to (its read-only API, host's loopback)."""
        from zdd_tui.proxy import traefik

        cp = self.lab.ssh(h, f"curl -s --max-time 3 http://127.0.0.1:{PROXY_PORT}{traefik.ROUTER_PATH}", check=False)
        return traefik.active_slot_from_router(cp.stdout)

    def in_flight(self, h: labkit.Host, port: int) -> int:
        """Connections established to a slot's port on the host now (from the root namespace: no
        SSH round trip between this count and what follows)."""
        cp = labkit.run(["nsenter", f"--net=/run/netns/{h.netns}", "ss", "-Htn", "state", "established",
                         f"( dport = :{port} )"])
        return len([x for x in cp.stdout.splitlines() if x.strip()])

    def served(self, h: labkit.Host) -> dict:
        """What the host's proxy answers on service.port, asked directly (not through the LB)."""
        status, body = labkit.http_get(h.ip, WEB_PORT, "/", timeout=3)
        assert status == 200, (h.name, status, body[:200])
        return json.loads(body)

    def host_pulls(self, since: int) -> list[str]:
        """Registry requests from the hosts (not the builder, not the sandbox) after byte offset
        `since` of the registry's access log."""
        hosts = {h.ip for h in self.lab.hosts}
        log = (self.lab.dir / "logs" / "registry.log").read_bytes()[since:].decode(errors="replace")
        return [line for line in log.splitlines() if line.split(" ", 1)[0] in hosts and '"' in line]

    def registry_log_size(self) -> int:
        return (self.lab.dir / "logs" / "registry.log").stat().st_size


AnySwap = TypeVar("AnySwap", bound=Swap)


def wait_for(what: str, fn, timeout: float = 60.0, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = fn()
            if last:
                return last
        except (OSError, RuntimeError, AssertionError, ValueError, KeyError) as exc:
            last = exc
        time.sleep(interval)
    pytest.fail(f"{what}: not within {timeout:.0f} s (last: {last!r})")


def clean_hosts(lab: labkit.Lab) -> None:
    """Hosts that run nothing: an earlier module of the session leaves its app there."""
    for h in lab.hosts:
        lab.ssh(h, "docker ps -aq | xargs -r docker rm -f >/dev/null; rm -rf /var/lib/zdd/* ~/.docker")


@contextmanager
def _running(e: E2E, name: str) -> Iterator[None]:
    """Once the block ends, however it ends: e's load, process-list watch and sandbox stopped, its
    durations reported."""
    t0 = time.monotonic()
    try:
        yield
    finally:
        if e.load:
            e.load.stop()
        if e.watch:
            e.watch.stop()
        stop_sandbox(e)
        report(f"{name} duration: {time.monotonic() - t0:.1f} s")
        for k, v in e.timings.items():
            report(f"  {k:<40} {v:7.1f} s")


def _workdir(lab: labkit.Lab, name: str) -> Path:
    work = lab.dir / name
    work.mkdir(mode=0o700)
    return work


@contextmanager
def lb_drain(lab: labkit.Lab, name: str) -> Iterator[E2E]:
    """An lb-drain e2e harness: the project, the sandbox in lab mode, zdd.yaml; stopped and
    reported at the end."""
    need_product()
    e = E2E(lab, _workdir(lab, name))
    with _running(e, name):
        make_project(e)
        start_sandbox(e)
        yield e


@contextmanager
def local_swap(lab: labkit.Lab, name: str, harness: type[AnySwap], **swap) -> Iterator[AnySwap]:
    """A local-swap e2e harness (Swap or a subclass, made with `swap`'s settings) on clean hosts: the
    project, the sandbox in lab mode, zdd.yaml with the lab's proxy image; stopped and reported
    at the end."""
    need_product()
    try:
        labimages.traefik_binary()
    except LookupError as exc:
        tiers.refuse(str(exc))
    e = harness(lab, _workdir(lab, name), **swap)
    with _running(e, name):
        e.proxy_ref = labimages.proxy_image(lab).ref
        clean_hosts(lab)
        make_project(e)
        start_sandbox(e, strategy="local-swap", proxy_image=e.proxy_ref, batch_size=e.batch_size)
        e.config()
        yield e
