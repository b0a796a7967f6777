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
from pathlib import Path

import pytest

import labkit
from labkit import report
from loadgen import LoadGenerator, SecretWatcher

REPO = Path(__file__).resolve().parents[2]
CONTEXT = "lab"
REGISTRY_NAME = "zdd-lab"
LB_INTERVAL = 3


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
                 build_context: str = "service", start_timeout_seconds: int = 20) -> None:
    """zdd.yaml for the lab. strategy is always written: the product's default is not what a
    test of one strategy wants to depend on."""
    lab = e.lab
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
{proxy}ssh:
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


def close_phase(e: E2E, next_phase: str):
    """End the current load phase (and start the next); every phase: >= 200 req/s, 0 failed."""
    ph = e.load.phase(next_phase)
    report("load " + ph.summary())
    assert e.load.error is None, e.load.error
    assert ph.sent > 0
    assert ph.rate >= 200, f"{ph.name}: only {ph.rate:.0f} req/s"
    assert ph.failed == 0, f"{ph.name}: {ph.failed} of {ph.sent} requests failed: {ph.failures}"
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
