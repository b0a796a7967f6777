"""Local hosts: each sandbox droplet is an address on the loopback running the service for real.

A `LocalHost` is one droplet: an address 127.A.B.N (the sandbox's own /24, see `AddressBlock`),
a directory `<state_dir>/hosts/<name>/` and a tiny container runtime with Docker's semantics where
the engine relies on them:
- pull: the tag must exist in the sandbox registry (else `ImageNotFoundError`); records it;
- run: one app container per host; `python -m zdd_service` as a supervised child process
  (`procs.Child`) with the host's address and ports and the image's environment; restart policy
  "always" (the process exiting means state "restarting", a restart after a backoff,
  restart_count + 1);
- stop: SIGTERM, wait up to the grace period, SIGKILL; the container is removed;
- inspect, logs (one log file per container, kept across restarts, new for each run; each line
  stamped with when it was written, so logs can be asked for since an instant);
- state files (`state/`): atomic exclusive create, atomic replace, append, remove.
What a host runs is persisted (`container.json`), so a restarted sandbox runs it again.
- local-swap (`host.swap`, zdd_tui/sandbox/swap.py): the real Traefik on the service port in front
  of two slot containers; `reboot()` SIGKILLs every process of the host and starts again what is
  persisted, as a droplet's power cycle would.

Service and proxy processes are children of the sandbox process, in their own session (a Ctrl-C in the
terminal reaches only the sandbox, which then stops them in order) and with a parent-death
signal, so they do not outlive a sandbox that is killed outright.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import re
import shutil
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from zdd_tui.sandbox.images import SandboxImage, parse_ref
from zdd_tui.sandbox.procs import (
    INHERIT,
    Child,
    can_bind,
    kill_leftover,
    log_append,
    pid_alive,
    read_json,
    read_log,
    write_atomic,
)
from zdd_tui.sandbox.procs import pdeathsig as _pdeathsig
from zdd_tui.sandbox.swap import SwapSide

log = logging.getLogger(__name__)

STATE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_INHERIT = INHERIT


class HostError(Exception):
    """A host operation failed (the agent answers 409/500 with the message)."""

    status = 500


class ImageNotFoundError(HostError):
    status = 404


class ConflictError(HostError):
    status = 409


class NoSuchHost(HostError):
    status = 404


class BadRequest(HostError):
    status = 400


def default_swap_settings(service_port: int = 8080) -> dict:
    """The proxy's ports (config.py's defaults) and how a slot container is told its port."""
    return {"service_port": service_port, "proxy_port": 9180, "slot_ports": {"a": 8081, "b": 8082},
            "port_env": "PORT", "grace": 10.0}


@dataclass
class AddressBlock:
    """A random 127.A.B.0/24 per sandbox: parallel sandboxes (tests, users) never share a host."""

    prefix: str  # "127.A.B"

    @classmethod
    def random(cls) -> AddressBlock:
        # Avoid 127.0.x.x (127.0.0.1 and friends are commonly used by other software).
        return cls(f"127.{random.randint(1, 254)}.{random.randint(0, 255)}")

    def address(self, n: int) -> str:
        return f"{self.prefix}.{n}"


class LocalHost:
    """One sandbox droplet's host (see module doc)."""

    def __init__(
        self,
        name: str,
        droplet_id: int,
        address: str,
        root: Path,
        *,
        service_port: int,
        admin_port: int,
        lookup: Callable[[str, str], SandboxImage | None],
        container_name: str = "app",
        swap_settings: dict | None = None,
    ):
        self.name = name
        self.droplet_id = droplet_id
        self.address = address
        self.root = root
        self.service_port = service_port
        self.admin_port = admin_port
        self._lookup = lookup
        self.container_name = container_name
        (root / "state").mkdir(parents=True, exist_ok=True)
        (root / "logs").mkdir(parents=True, exist_ok=True)
        self._app: Child | None = None  # the app container's process, while the sandbox runs it
        self._lock = asyncio.Lock()
        self._container: dict | None = read_json(self._container_file, None)
        self.swap = SwapSide(
            name=name, address=address, root=root, container_name=container_name,
            settings=swap_settings or default_swap_settings(service_port),
            pull=self.pull, pulled=self.pulled, forget_image=self._forget_image, holder=self._holder,
        )
        # The running container's secrets: in this process's memory only, never in a file here
        # (container.json records their names and fingerprints, `secrets_label`).
        self._secret_env: dict[str, str] = {}

    # ----- persisted records -----
    @property
    def _container_file(self) -> Path:
        return self.root / "container.json"

    @property
    def _images_file(self) -> Path:
        return self.root / "images.json"

    @property
    def log_file(self) -> Path:
        return self.root / "logs" / "container.log"

    def _save(self) -> None:
        if self._container is None:
            self._container_file.unlink(missing_ok=True)
        else:
            write_atomic(self._container_file, json.dumps(self._container, indent=1))

    def info(self) -> dict:
        c = self.serving_container()
        return {
            "name": self.name,
            "droplet_id": self.droplet_id,
            "address": self.address,
            "port": self.service_port,
            "admin_port": self.admin_port,
            "tag": c["tag"] if c else None,
            "state": c["state"] if c else None,
            "proxy": self.swap.proxy_info() if self.swap.installed else None,
        }

    def serving_container(self) -> dict | None:
        """What answers on the service port: the single container (lb-drain), else the running
        container on the slot the proxy is configured for (local-swap)."""
        c = self.inspect()
        if c is not None or not self.swap.installed:
            return c
        slot = self.swap.active_slot()
        rec = self.swap.running_on(slot) if slot else None
        return next((i for i in self.swap.containers() if rec and i["name"] == rec["name"]), None)

    def _holder(self) -> str | None:
        c = self.inspect()
        if c is not None and c.get("state") in ("running", "restarting"):
            return f"the app container {c['name']} ({c['tag']})"
        return None

    def _forget_image(self, image_ref: str) -> None:
        if self._container is not None and self._container.get("image_ref") == image_ref:
            return
        pulled = read_json(self._images_file, {})
        if pulled.pop(image_ref, None) is not None:
            write_atomic(self._images_file, json.dumps(pulled, indent=1))

    # ----- images -----
    def _resolve(self, image_ref: str) -> tuple[str, SandboxImage]:
        repo, tag = parse_ref(image_ref)
        image = self._lookup(repo, tag)
        if image is None:
            raise ImageNotFoundError(f"manifest for {image_ref} not found: manifest unknown")
        return repo, image

    async def pull(self, image_ref: str) -> dict:
        _repo, image = self._resolve(image_ref)
        pulled = read_json(self._images_file, {})
        pulled[image_ref] = {
            "tag": image.tag, "digest": image.digest, "image": image.to_dict(), "pulled_at": time.time()
        }
        write_atomic(self._images_file, json.dumps(pulled, indent=1))
        return {"ref": image_ref, "tag": image.tag, "digest": image.digest}

    def pulled(self) -> dict:
        return read_json(self._images_file, {})

    # ----- container -----
    def inspect(self) -> dict | None:
        if self._container is None:
            return None
        return {k: v for k, v in self._container.items() if k != "desired"}

    async def run(self, image_ref: str, env: dict[str, str] | None = None, *,
                  secrets: dict[str, str] | None = None, secrets_label: str | None = None) -> dict:
        async with self._lock:
            if self._container is not None and self._container.get("state") in ("running", "restarting"):
                raise ConflictError(
                    f'Conflict. The container name "/{self.container_name}" is already in use on {self.name}'
                )
            # Like `docker run`: pull when the image is not here yet (ImageNotFound if unknown).
            entry = self.pulled().get(image_ref)
            if entry is None:
                await self.pull(image_ref)
                entry = self.pulled()[image_ref]
            image = SandboxImage.from_dict(entry["image"])
            self._container = {
                "name": self.container_name,
                "image_ref": image_ref,
                "tag": image.tag,
                "digest": image.digest,
                "image": image.to_dict(),
                "env": dict(env or {}),
                "secrets_label": secrets_label or None,
                "state": "created",
                "started_at": None,
                "exit_code": None,
                "restart_count": 0,
                "pid": None,
                "desired": "running",
            }
            self._secret_env = dict(secrets or {})
            self.log_file.write_text("")  # a new container has a new log
            self._save()
            await self._start_app()
            return self.inspect()  # type: ignore[return-value]

    def _environment(self) -> dict[str, str]:
        assert self._container is not None
        env = {k: os.environ[k] for k in _INHERIT if k in os.environ}
        env["PYTHONUNBUFFERED"] = "1"
        env.update(SandboxImage.from_dict(self._container["image"]).environment())
        env.update(self._container.get("env") or {})
        env.update(self._secret_env)
        # The host's network, like --network host on a droplet: not the caller's to change.
        env.update(
            ZDD_HOST=self.address,
            ZDD_PORT=str(self.service_port),
            ZDD_ADMIN_HOST=self.address,
            ZDD_ADMIN_PORT=str(self.admin_port),
        )
        return env

    def _log(self, event: str) -> None:
        """A line of the sandbox's own in the container's log."""
        log_append(self.log_file, f"[sandbox] {self.container_name} {event}")

    async def _start_app(self) -> None:
        assert self._container is not None
        app = Child([sys.executable, "-m", "zdd_service"], self._environment(), cwd=self.root,
                    log_file=self.log_file, label=self.container_name, on_change=lambda: self._record(app),
                    backoff=0.25, restart_count=int(self._container.get("restart_count") or 0),
                    exit_code=self._container.get("exit_code"))
        self._app = app
        await app.start()

    def _record(self, app: Child) -> None:
        """Persist what the app's process does (started, restarting), while it is this host's."""
        if app is not self._app or self._container is None:
            return
        self._container.update(state=app.state, started_at=app.started_at, exit_code=app.exit_code,
                               restart_count=app.restart_count, pid=app.pid)
        self._save()

    async def _end_app(self, grace: float | None) -> int | None:
        """Stop the process (SIGTERM, grace, SIGKILL) and its restarts; the exit code. The record
        keeps what it said before (a shutdown keeps the container "running", to run it again)."""
        app, self._app = self._app, None
        return await app.stop(grace) if app is not None else None

    async def stop(self, grace: float) -> None:
        """Stop and remove the container (no-op when there is none)."""
        async with self._lock:
            if self._container is None:
                return
            rc = await self._end_app(grace)
            self._log(f"stopped (exit code {rc})")
            self._container = None
            self._secret_env = {}
            self._save()

    async def resume(self) -> None:
        """After a sandbox restart: run again what this host ran (restart policy "always"; the
        proxy and the slot containers that were running)."""
        await self.swap.resume()
        async with self._lock:
            c = self._container
            if c is None or c.get("desired") != "running" or self._app is not None:
                return
            # One this host started in a previous sandbox run, somehow still alive, would hold the
            # address: it is ours if its environment names this host's address and admin port.
            kill_leftover(c.get("pid"), [f"ZDD_HOST={self.address}".encode(),
                                         f"ZDD_ADMIN_PORT={self.admin_port}".encode()])
            if c.get("secrets_label") and not self._secret_env:
                # Its secrets were only in the memory of the sandbox that started it.
                self._log("not restarted: its secrets were held in the previous sandbox process's memory only; "
                          "deploy again")
                c.update(state="exited", exit_code=None, pid=None, desired="stopped")
                self._save()
                return
            await self._start_app()

    async def shutdown(self, grace: float | None = 10.0) -> None:
        """Sandbox exit: end the processes but keep the records so a restart runs them again
        (grace None: SIGKILL at once)."""
        await self.swap.halt(grace)
        async with self._lock:
            if self._app is None:
                return
            await self._end_app(grace)
            if self._container is not None:
                self._container.update(pid=None)
                self._save()

    async def reboot(self) -> None:
        """A power cut and a boot: every process of the host SIGKILLed, then started again from
        what is persisted (the proxy on its configured slot, containers that were running;
        stopped ones stay stopped)."""
        await self.shutdown(None)
        self._log("host rebooted")
        await self.resume()

    async def release(self, image_ref: str, argv: list[str], env: dict[str, str] | None = None, *,
                      secrets: dict[str, str] | None = None, bound: float = 600.0,
                      on_line: Callable[[str], Awaitable[None]] | None = None) -> tuple[int, list[str]]:
        """A one-off process of the image running `argv` (the release command; `python` is the
        sandbox's interpreter), with the image's environment, `env` and `secrets`, and no port:
        (exit code, output lines). Ended (exit code 124) after `bound` seconds."""
        if not argv or not all(isinstance(a, str) and a for a in argv):
            raise BadRequest("argv must be a non-empty list of non-empty strings")
        entry = self.pulled().get(image_ref)
        if entry is None:
            await self.pull(image_ref)
            entry = self.pulled()[image_ref]
        image = SandboxImage.from_dict(entry["image"])
        penv = {k: os.environ[k] for k in _INHERIT if k in os.environ}
        for layer in ({"PYTHONUNBUFFERED": "1"}, image.environment(), env or {}, secrets or {},
                      {"ZDD_HOST": self.address}):
            penv.update(layer)
        program = sys.executable if argv[0] in ("python", "python3") else argv[0]
        try:
            proc = await asyncio.create_subprocess_exec(
                program, *argv[1:], env=penv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT, cwd=str(self.root), start_new_session=True, preexec_fn=_pdeathsig)
        except OSError as exc:
            line = f"cannot start {argv[0]!r}: {exc.strerror}"
            if on_line is not None:
                await on_line(line)
            return 127, [line]
        lines: list[str] = []

        async def pump() -> None:
            assert proc.stdout is not None
            async for raw in proc.stdout:
                text = raw.decode(errors="replace").rstrip("\n")
                lines.append(text)
                if on_line is not None:
                    await on_line(text)

        try:
            await asyncio.wait_for(pump(), bound)
            return await proc.wait(), lines
        except TimeoutError:
            proc.kill()
            await proc.wait()
            lines.append(f"[sandbox] release command did not finish within {bound:g}s; stopped")
            return 124, lines
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()

    def pids(self) -> list[int]:
        own = [self._app.pid] if self._app is not None and self._app.pid is not None else []
        return own + self.swap.pids()

    def logs(self, tail: int = 100, since: float | None = None) -> list[str]:
        """The app container's last `tail` lines (all when tail <= 0); with `since` (epoch
        seconds), only those written at or after it. Local-swap: the slot container started
        last (during a deploy the new one, even once it has exited; else the one that serves)."""
        if self._container is None:
            started = [c for c in self.swap.containers() if c.get("started_at")]
            if started:
                newest = max(started, key=lambda c: (c["started_at"], c.get("state") in ("running", "restarting")))
                return read_log(self.root / "logs" / f"{newest['name']}.log", tail, since)
        return read_log(self.log_file, tail, since)

    # ----- state files -----
    def _state_path(self, name: str) -> Path:
        if not STATE_NAME.fullmatch(name):
            raise BadRequest(f"bad state file name {name!r}: letters, digits, '.', '_', '-' only")
        return self.root / "state" / name

    def state_read(self, name: str) -> str | None:
        try:
            return self._state_path(name).read_text()
        except FileNotFoundError:
            return None

    def state_create(self, name: str, content: str) -> bool:
        path = self._state_path(name)
        # Write a temporary file, then link it into place: link() fails if the name exists, so the
        # create is exclusive and a reader never sees a half-written file.
        tmp = path.with_name(f".{name}.{os.getpid()}.{random.randrange(1 << 30)}.tmp")
        tmp.write_text(content)
        try:
            os.link(tmp, path)
            return True
        except FileExistsError:
            return False
        finally:
            tmp.unlink(missing_ok=True)

    def state_write(self, name: str, content: str) -> None:
        write_atomic(self._state_path(name), content)

    def state_append(self, name: str, line: str) -> None:
        with open(self._state_path(name), "a") as f:
            f.write(line.rstrip("\n") + "\n")

    def state_remove(self, name: str) -> None:
        self._state_path(name).unlink(missing_ok=True)

    def state_list(self) -> list[str]:
        return sorted(p.name for p in (self.root / "state").iterdir() if not p.name.startswith("."))


class HostManager:
    """All local hosts of one sandbox: address allocation, creation, removal, shutdown.

    `<state_dir>/hosts/hosts.json` records the address block and each host (name, droplet id,
    address, external or not) so a restarted sandbox finds the same hosts at the same addresses.
    External hosts (lab mode) have an address and no local process.
    """

    def __init__(
        self,
        state_dir: Path,
        lookup: Callable[[str, str], SandboxImage | None],
        *,
        service_port: int = 8080,
        admin_port: int = 9090,
        container_name: str = "app",
        swap_settings: dict | None = None,
    ):
        self.root = Path(state_dir) / "hosts"
        self.root.mkdir(parents=True, exist_ok=True)
        self.lookup = lookup
        self.service_port = service_port
        self.admin_port = admin_port
        self.container_name = container_name
        self.swap_settings = swap_settings or default_swap_settings(service_port)
        idx = read_json(self.root / "hosts.json", {})
        self.block = AddressBlock(idx["block"]) if idx.get("block") else AddressBlock.random()
        self._records: dict[str, dict] = idx.get("hosts", {})
        self.hosts: dict[str, LocalHost] = {}
        self._save()

    def _save(self) -> None:
        index = {"block": self.block.prefix, "hosts": self._records}
        write_atomic(self.root / "hosts.json", json.dumps(index, indent=1))

    def records(self) -> dict[str, dict]:
        return dict(self._records)

    def allocate_address(self, exclude: set | None = None) -> str:
        """The next free 127.A.B.N whose service and admin ports can really be bound."""
        used = {r["address"] for r in self._records.values()} | set(exclude or ())
        for n in range(1, 255):
            addr = self.block.address(n)
            if addr in used:
                continue
            ports = {self.service_port, self.admin_port, int(self.swap_settings["proxy_port"]),
                     *(int(p) for p in self.swap_settings["slot_ports"].values())}
            if all(can_bind(addr, p) for p in ports):
                return addr
        raise HostError(f"no free address left in {self.block.prefix}.0/24")

    def get(self, name: str) -> LocalHost:
        h = self.hosts.get(name)
        if h is None:
            raise NoSuchHost(f"no local host named {name!r}")
        return h

    def by_droplet(self, droplet_id: int) -> LocalHost | None:
        return next((h for h in self.hosts.values() if h.droplet_id == droplet_id), None)

    def add(self, name: str, droplet_id: int, address: str | None = None) -> LocalHost:
        """Create (or re-open after a restart) the local host of a droplet. Starts nothing."""
        if name in self.hosts:
            return self.hosts[name]
        rec = self._records.get(name)
        if rec and not rec.get("external"):
            address = address or rec["address"]
        address = address or self.allocate_address()
        h = LocalHost(
            name,
            droplet_id,
            address,
            self.root / name,
            service_port=self.service_port,
            admin_port=self.admin_port,
            lookup=self.lookup,
            container_name=self.container_name,
            swap_settings=self.swap_settings,
        )
        self.hosts[name] = h
        self._records[name] = {"droplet_id": droplet_id, "address": address}
        self._save()
        return h

    def add_external(self, name: str, droplet_id: int, address: str) -> None:
        """A lab host: the LB proxies to it; no local process, no agent."""
        self._records[name] = {"droplet_id": droplet_id, "address": address, "external": True}
        self._save()

    def is_external(self, name: str) -> bool:
        return bool(self._records.get(name, {}).get("external"))

    async def remove(self, name: str, grace: float = 10.0) -> None:
        """The droplet was destroyed: stop its service and forget the host (its files go too)."""
        h = self.hosts.pop(name, None)
        if h is not None:
            await h.stop(grace)
            await h.swap.halt(grace)
            shutil.rmtree(h.root, ignore_errors=True)
        if self._records.pop(name, None) is not None:
            self._save()

    async def resume_all(self) -> None:
        await asyncio.gather(*(h.resume() for h in self.hosts.values()))

    async def shutdown(self, grace: float | None = 10.0) -> None:
        await asyncio.gather(*(h.shutdown(grace) for h in self.hosts.values()), return_exceptions=True)

    def pids(self) -> list[int]:
        return [p for h in self.hosts.values() for p in h.pids()]


__all__ = [
    "AddressBlock",
    "ConflictError",
    "HostError",
    "HostManager",
    "ImageNotFoundError",
    "LocalHost",
    "NoSuchHost",
    "can_bind",
    "pid_alive",
]
