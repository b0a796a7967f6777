"""The whole sandbox in one process: the local DO API, its load balancer(s) and the local hosts.

    sb = Sandbox(SandboxOptions(state_dir=Path("..."), hosts=2))
    await sb.start()          # API + LBs + hosts; writes zdd.yaml; sb.info is the JSON line's dict
    ...                       # sb.api (SandboxAPI), sb.lb (the project's SandboxLB), sb.hosts
    await sb.stop()           # stops every process it started (state stays for the next start)

A fresh state dir gets: a token, a registry seeded with sample-service versions (images.py), an
LB tagged like the droplets with a fast health check, and N droplets (app-1..app-N) whose hosts
run the older good version (so `deploy latest` has something to do); these exist already, so
they are active at once. A `local-swap` sandbox (the default) runs on each of them the real
proxy (Traefik, see swap.py) in front of that version in slot a; an `lb-drain` one runs the
version alone on the service port, with its admin port. With no hosts (and no external droplets)
the account starts empty: no droplets, no load balancer, no registry (the sample versions appear
in the registry once one is created), and zdd.yaml names the droplets `setup` is to create
(`setup_droplets` of them). Whatever is created through the API takes `create_delay` seconds to
become active, as on DigitalOcean: each droplet so made gets a local host (running nothing until
a deploy), and the project's load balancer its proxy. Starting again on the same state dir keeps
droplets, tags, LB settings and what each host runs; the API and LB try their previous ports
first so an existing zdd.yaml stays valid.

Lab mode (`external` droplets and a real registry backend): external droplets are given a name and
an IP, have no local process and no agent; the LB proxies to them like to any droplet.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import logging
import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import yaml

from zdd_tui.config import load_config
from zdd_tui.errors import UsageError
from zdd_tui.sandbox import SANDBOX_REGISTRY_SERVER, LocalServer
from zdd_tui.sandbox.agent import agent_routes
from zdd_tui.sandbox.api import SandboxAPI
from zdd_tui.sandbox.hosts import HostError, HostManager, LocalHost, can_bind
from zdd_tui.sandbox.images import SandboxImage, seed_images
from zdd_tui.sandbox.lb import SandboxLB
from zdd_tui.sandbox.state import SandboxState
from zdd_tui.sandbox.statedir import TOKEN, claim, read_token, write_token

log = logging.getLogger(__name__)

STRATEGIES = ("local-swap", "lb-drain")
INFO_FILE = "sandbox.json"  # pid, URLs and config path of the running sandbox
# Seconds a droplet or load balancer created through the API stays "new" (without addresses).
CREATE_DELAY = 3.0
# deploy.canary.soak_seconds in the zdd.yaml `sandbox up` writes: long enough to judge under a
# modest load, short enough to watch.
SANDBOX_SOAK_SECONDS = 20


@dataclass(frozen=True)
class ExternalDroplet:
    """A lab host: an address the LB proxies to; no local process."""

    name: str
    ip: str
    private_ip: str | None = None
    tags: tuple[str, ...] = ()  # default: the project's droplet tag


@dataclass
class SandboxOptions:
    state_dir: Path
    hosts: int = 2
    app: str = "app"
    tag: str = "zdd-app"
    lb_name: str = "zdd-app-lb"
    registry_name: str = "zdd-sandbox"
    repository: str = "app"
    service_port: int = 8080
    admin_port: int = 9090
    # How new hosts are set up, and deploy.strategy in zdd.yaml: "local-swap" (the proxy in front
    # of slot a) or "lb-drain" (the app alone, with its admin port). `sandbox up` defaults to
    # local-swap; in-process users get today's hosts unless they ask.
    strategy: str = "lb-drain"
    proxy_port: int = 9180
    slot_a_port: int = 8081
    slot_b_port: int = 8082
    port_env: str = "PORT"
    # A snappy sandbox: DO's minimum interval and timeout, its smallest thresholds but one.
    lb_interval: int = 3
    lb_timeout: int = 3
    lb_unhealthy: int = 2
    lb_healthy: int = 3
    stop_grace_seconds: int = 10
    initial_tag: str | None = None  # default: the older good version
    config_path: Path | None = None  # default: <state_dir>/zdd.yaml
    external: list[ExternalDroplet] = field(default_factory=list)
    registry_backend: Any = None  # e.g. zdd_tui.sandbox.registry.DistributionRegistry (lab)
    registry_server: str | None = None  # image host in refs; default: the backend's, else ours
    create_delay: float = CREATE_DELAY
    setup_droplets: int = 2  # how many droplets (app-1..) zdd.yaml names for setup in an empty account
    host_shutdown_grace: float = 10.0
    # Ready means ready: start() returns once every host runs a listening service and the LB
    # counts the healthy ones in (bounded by the LB's own settings).
    wait_ready: bool = True


def image_from_record(rec: dict) -> SandboxImage:
    extra = rec.get("_extra") or {}
    return SandboxImage(
        tag=rec["tag"],
        behaviour=rec.get("_behaviour", "ok"),
        version=extra.get("version") or rec["tag"],
        digest=rec.get("manifest_digest", ""),
        size=int(rec.get("compressed_size_bytes") or 0),
        created_at=rec.get("updated_at", ""),
        env=dict(extra.get("env") or {}),
    )


class Sandbox(LocalServer):
    def __init__(self, options: SandboxOptions):
        self.o = options
        self.state_dir = Path(options.state_dir).resolve()
        self.config_path = Path(options.config_path or self.state_dir / "zdd.yaml").resolve()
        self.api: SandboxAPI | None = None
        self.hosts: HostManager | None = None
        self.lbs: dict[str, SandboxLB] = {}
        self.lb_id: str | None = None  # the project's LB
        self.token = ""
        self.info: dict = {}
        self._lockfile: TextIO | None = None
        self._started = False
        self._tag_records: list[dict] = []

    # ----- registry lookups for local hosts -----
    def _lookup(self, repo: str, tag: str) -> SandboxImage | None:
        assert self.api is not None
        parts = repo.split("/")
        repository = parts[-1]
        if len(parts) >= 2:
            reg = self.api.state.data.get("registry")
            if reg is None or parts[-2] != reg["name"]:
                return None
        tags = self.api.state.data["repositories"].get(repository, {})
        rec = tags.get(tag)
        if rec is None and tag.startswith("sha256:"):
            rec = next((r for r in tags.values() if r.get("manifest_digest") == tag), None)
        return image_from_record(rec) if rec else None

    @property
    def lb(self) -> SandboxLB | None:
        return self.lbs.get(self.lb_id) if self.lb_id else None

    @property
    def image_repo(self) -> str:
        server = self.o.registry_server or getattr(self.o.registry_backend, "server", None) or SANDBOX_REGISTRY_SERVER
        return f"{server}/{self.o.registry_name}/{self.o.repository}"

    # ----- lifecycle -----
    def _lock(self) -> None:
        claim(self.state_dir)  # the only kind of directory a sandbox config's token is read from
        self._lockfile = open(self.state_dir / ".lock", "a+")
        try:
            fcntl.flock(self._lockfile, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lockfile.close()
            self._lockfile = None
            pid = self._previous_info().get("pid")
            raise UsageError(
                f"a sandbox is already running on {self.state_dir}" + (f" (pid {pid})" if pid else ""),
                "stop it (Ctrl-C or SIGTERM) or use another --state-dir",
            ) from None

    def _previous_info(self) -> dict:
        try:
            return json.loads((self.state_dir / INFO_FILE).read_text())
        except (OSError, ValueError):
            return {}

    def _token(self) -> str:
        if os.path.lexists(self.state_dir / TOKEN):
            return read_token(self.state_dir)
        token = "sandbox-" + secrets.token_hex(24)
        write_token(self.state_dir, token)
        return token

    def _allocate(self, droplet: dict) -> tuple[str, str | None]:
        assert self.api is not None and self.hosts is not None
        used = {SandboxState.droplet_ipv4(d, "public") for d in self.api.state.droplets()}
        return self.hosts.allocate_address(exclude=used), None

    async def _on_created(self, droplet: dict) -> None:
        assert self.hosts is not None
        ip = SandboxState.droplet_ipv4(droplet, "public")  # published once the droplet is active
        if (droplet.get("_sandbox") or {}).get("external"):
            self.hosts.add_external(droplet["name"], droplet["id"], ip or "")
            return
        if droplet["name"] in self.hosts.hosts and self.hosts.hosts[droplet["name"]].droplet_id != droplet["id"]:
            raise HostError(f"the sandbox needs unique droplet names: {droplet['name']!r} exists")
        self.hosts.add(droplet["name"], droplet["id"], ip)
        self._update_info()

    async def _on_deleted(self, droplet: dict) -> None:
        assert self.hosts is not None
        h = self.hosts.hosts.get(droplet["name"])
        if h is not None and h.droplet_id == droplet["id"]:
            await self.hosts.remove(droplet["name"], grace=1.0)  # a destroyed droplet goes fast
        elif self.hosts.is_external(droplet["name"]):
            await self.hosts.remove(droplet["name"])

    async def _on_lb_changed(self, lb: dict | None, lb_id: str) -> None:
        if lb is None:
            old = self.lbs.pop(lb_id, None)
            if old is not None:
                await old.stop()
            return
        if lb_id not in self.lbs:
            await self._start_lb(lb_id)
        if self.lb_id is None and lb["name"] == self.o.lb_name:
            self.lb_id = lb_id  # the project's LB, created by setup in an empty account
            self._update_info()
        # A PUT needs nothing more: the LB re-reads its config from the state on each decision.

    async def _start_lb(self, lb_id: str, port: int = 0) -> SandboxLB:
        assert self.api is not None
        state = self.api.state
        lb = SandboxLB(lambda: state.data["load_balancers"].get(lb_id), self._droplets_now, port=port)
        try:
            await lb.start()
        except OSError:
            if not port:
                raise
            lb = SandboxLB(lambda: state.data["load_balancers"].get(lb_id), self._droplets_now)
            await lb.start()
        self.lbs[lb_id] = lb
        return lb

    def _droplets_now(self) -> list[dict]:
        """The droplets as of now: one that became active since the last API request gets its
        address (the LB must not wait for someone to ask the API)."""
        assert self.api is not None
        self.api.state.refresh()
        return self.api.state.droplets()

    def _update_info(self) -> None:
        """After a change through the API (a droplet, the project's LB): sandbox.json follows."""
        if self._started:
            self.info = self._info()
            self._write_info()

    @property
    def empty_account(self) -> bool:
        return self.o.hosts == 0 and not self.o.external

    def _lb_health(self, lb_id: str) -> dict[int, bool]:
        lb = self.lbs.get(lb_id)
        return lb.health_view() if lb else {}

    def _lb_body(self) -> dict:
        return {
            "name": self.o.lb_name,
            "region": "nyc3",
            "size_unit": 1,
            "tag": self.o.tag,
            "forwarding_rules": [
                {
                    "entry_protocol": "http",
                    "entry_port": 80,
                    "target_protocol": "http",
                    "target_port": self.o.service_port,
                }
            ],
            "health_check": {
                "protocol": "http",
                "port": self.o.service_port,
                "path": "/health",
                "check_interval_seconds": self.o.lb_interval,
                "response_timeout_seconds": self.o.lb_timeout,
                "unhealthy_threshold": self.o.lb_unhealthy,
                "healthy_threshold": self.o.lb_healthy,
            },
        }

    def _check_initial_tag(self) -> None:
        """Bad input changes nothing: refuse an unknown --initial-tag before touching the dir."""
        tag = self.o.initial_tag
        if not tag or tag == "latest" or self.o.registry_backend is not None:
            return
        try:
            data = json.loads((self.state_dir / "api-state.json").read_text())
        except (OSError, ValueError):
            data = {}
        known = (data.get("repositories") or {}).get(self.o.repository) or {}
        if tag not in known:
            raise UsageError(
                f"initial tag {tag!r} is not in the sandbox registry"
                + (f" (it has: {', '.join(sorted(known))})" if known else " (a fresh sandbox has random sha tags)"),
                "leave --initial-tag out (the older good version), or pick a tag a previous start listed",
            )

    async def start(self) -> dict:
        self._check_initial_tag()
        self._lock()
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise
        return self.info

    async def _start(self) -> None:
        o = self.o
        self.token = self._token()
        previous = self._previous_info()
        if o.strategy not in STRATEGIES:
            raise UsageError(f"unknown strategy {o.strategy!r}", f"one of {', '.join(STRATEGIES)}")
        self.hosts = HostManager(
            self.state_dir, self._lookup, service_port=o.service_port, admin_port=o.admin_port, container_name=o.app,
            swap_settings=self._swap_settings(),
        )
        api_port = int(previous.get("api_port") or 0)
        if api_port and not can_bind("127.0.0.1", api_port):
            api_port = 0
        self.api = SandboxAPI(
            self.state_dir,
            self.token,
            registry_backend=o.registry_backend,
            port=api_port,
            activation_delay=o.create_delay,
            address_allocator=self._allocate,
            registry_server=o.registry_server
            or (None if o.registry_backend is not None else SANDBOX_REGISTRY_SERVER),
        )
        self.api.on_droplet_created = self._on_created
        self.api.on_droplet_deleted = self._on_deleted
        self.api.on_load_balancer_changed = self._on_lb_changed
        self.api.lb_health_provider = self._lb_health
        self.api.add_routes(agent_routes(self.hosts, self.token, self.api.docker_auth_refusal))
        state = self.api.state

        # Registry: seeded once (a real backend in lab mode has its own tags). An empty account
        # has the sample versions waiting for the registry setup creates.
        if o.registry_backend is None:
            if state.data.get("registry") is None and not self.empty_account:
                state.create_registry(o.registry_name, "basic")
            if not state.data["repositories"].get(o.repository):
                for img in seed_images():
                    state.put_registry_tag(
                        o.repository,
                        img.tag,
                        behaviour=img.behaviour,
                        manifest_digest=img.digest,
                        compressed_size_bytes=img.size,
                        updated_at=img.created_at.replace("+00:00", "Z"),
                        extra={"version": img.version},
                    )
        elif state.data.get("registry") is None:
            state.create_registry(o.registry_name, "basic")

        # Hosts of droplets we already know (a restart), then new ones.
        for d in state.droplets():
            if (d.get("_sandbox") or {}).get("external"):
                self.hosts.add_external(d["name"], d["id"], _public_ip(d) or "")
            else:
                self.hosts.add(d["name"], d["id"], SandboxState.droplet_ipv4(d, "public"))
        known = {d["name"] for d in state.droplets()}
        for ext in o.external:
            if ext.name not in known:
                d = state.create_droplet(
                    ext.name,
                    tags=list(ext.tags or (o.tag,)),
                    public_ipv4=ext.ip,
                    private_ipv4=ext.private_ip,
                    sandbox={"external": True},
                )
                state.activate_droplet(d)  # part of the account as it starts: up already
                await self.api.notify_created(d)
        new_hosts = []
        for i in range(1, o.hosts + 1):
            name = f"{o.app}-{i}"
            if name not in known:
                d = state.create_droplet(name, tags=[o.tag])
                state.activate_droplet(d)
                await self.api.notify_created(d)
                new_hosts.append(name)

        # What the hosts run: again what they ran; the initial version on new ones.
        await self.hosts.resume_all()
        if new_hosts and o.registry_backend is None:
            initial = o.initial_tag or self._default_initial_tag()
            ref = f"{self.image_repo}:{initial}"
            if self._lookup(self.image_repo, initial) is None:
                raise UsageError(f"initial tag {initial!r} is not in the sandbox registry")
            await asyncio.gather(*(self._first_run(self.hosts.get(name), ref) for name in new_hosts))

        # The project's LB (created once; later starts keep its settings, PUTs included).
        mine = [lb for lb in state.load_balancers() if lb["name"] == o.lb_name]
        if not mine and self.empty_account:
            lb_obj = None
        elif not mine:
            body = self._lb_body()
            wanted = dict(body["health_check"])
            # DO's API refuses intervals/timeouts under 3 s; tests want faster. Create with DO's
            # limits, then set the requested values in the sandbox's own state.
            for k in ("check_interval_seconds", "response_timeout_seconds"):
                body["health_check"][k] = max(3, body["health_check"][k])
            lb_obj = state.create_load_balancer(body, ip=self.api.lb_ip)
            state.activate_load_balancer(lb_obj)
            if lb_obj["health_check"] != {**lb_obj["health_check"], **wanted}:
                lb_obj["health_check"].update(wanted)
            state.save()
        else:
            lb_obj = mine[0]
        self.lb_id = lb_obj["id"] if lb_obj else None

        await self.api.start()
        lb_ports = previous.get("lb_ports") or {}
        for lb in state.load_balancers():
            port = int(lb_ports.get(lb["id"]) or 0)
            await self._start_lb(lb["id"], port if port and can_bind("127.0.0.1", port) else 0)
        self._started = True
        if o.wait_ready:
            await self._wait_ready()

        try:
            self._tag_records = await self.api.registry_backend.tags(o.repository)
        except Exception as exc:  # noqa: BLE001 - a lab registry that is not up yet: report no tags, not a failure
            log.warning("reading the registry's tags failed: %s", exc)
            self._tag_records = []
        self._write_config()
        self.info = self._info()
        self._write_info()

    def _swap_settings(self) -> dict:
        o = self.o
        return {"service_port": o.service_port, "proxy_port": o.proxy_port,
                "slot_ports": {"a": o.slot_a_port, "b": o.slot_b_port}, "port_env": o.port_env,
                "grace": float(o.stop_grace_seconds)}

    async def _first_run(self, h: LocalHost, ref: str) -> None:
        env = {"ZDD_GRACE_SECONDS": str(self.o.stop_grace_seconds)}
        await h.pull(ref)
        if self.o.strategy == "local-swap":
            await h.swap.run_slot("a", ref, env)
            await h.swap.install_proxy("a")
        else:
            await h.run(ref, env)

    async def _wait_ready(self) -> None:
        """Until each local host's service listens (or is crash-looping), then until the LB counts
        in every droplet whose service says it is healthy. Never an error: a broken or slow
        version is a legitimate thing for a sandbox to run (it is reported as it is)."""
        assert self.api is not None and self.hosts is not None
        lb = self.lb
        if lb is None:
            return
        hc = lb.health_check()
        deadline = time.monotonic() + (int(hc["healthy_threshold"]) + 1) * float(hc["check_interval_seconds"]) + float(
            hc["response_timeout_seconds"]
        ) + 10
        targets = {t.droplet_id: t for t in lb.targets()}
        probe_port = int(hc.get("port") or self.o.service_port)
        while time.monotonic() < deadline:
            pending = []
            for did, t in targets.items():
                h = self.hosts.by_droplet(did)
                c = h.serving_container() if h else None
                if h is None or c is None or c["state"] != "running":
                    continue  # external, empty or crash-looping: nothing to wait for
                # A slot container is asked on its own port: the proxy in front answers 502 while
                # the app is not listening yet, which is not an answer of the app's.
                status = await _health_status(t.address, int(c.get("port") or probe_port), hc.get("path") or "/")
                if status is None:
                    pending.append(did)  # not listening yet
                elif 200 <= status < 400 and not lb.health_view().get(did):
                    pending.append(did)  # healthy: wait for the LB to count it in
            if not pending:
                return
            await asyncio.sleep(0.1)

    def _default_initial_tag(self) -> str:
        assert self.api is not None
        tags = self.api.state.registry_tags(self.o.repository)  # newest first
        good = [t for t in tags if t.get("_behaviour", "ok") == "ok" and t["tag"] != "latest"]
        return good[-1]["tag"] if good else "latest"

    def _write_config(self) -> None:
        assert self.api is not None
        o = self.o
        # No LB yet (an empty account): the settings setup is to create it with.
        lb = self.api.state.load_balancer(self.lb_id) if self.lb_id else self._lb_body()
        hc = lb["health_check"]
        names = sorted(d["name"] for d in self.api.state.droplets(tag=o.tag)) or [
            f"{o.app}-{i}" for i in range(1, o.setup_droplets + 1)]
        server = self.image_repo.split("/")[0]
        doc = {
            "app": o.app,
            "runtime": "sandbox",
            "digitalocean": {"api_url": self.api.url, "region": "nyc3"},
            "droplets": {"tag": o.tag, "names": names},
            "load_balancer": {
                "name": o.lb_name,
                "entry_port": lb["forwarding_rules"][0]["entry_port"],
                "target_port": lb["forwarding_rules"][0]["target_port"],
                # zdd.yaml holds DO-valid values (3 s at least); a faster sandbox LB (tests) runs
                # faster than its file says, and the engine reads the live values from the API.
                "health_check": {
                    k: (max(3, hc[k]) if k in ("check_interval_seconds", "response_timeout_seconds") else hc[k])
                    for k in (
                        "protocol", "path", "port", "check_interval_seconds", "response_timeout_seconds",
                        "unhealthy_threshold", "healthy_threshold")
                },
            },
            "registry": {"name": o.registry_name, "repository": o.repository, "server": server},
            "service": {
                "port": o.service_port,
                "admin_port": o.admin_port,
                "port_env": o.port_env,
                # The service drains within the engine's stop grace (its own default is 30 s).
                "env": {"ZDD_GRACE_SECONDS": str(o.stop_grace_seconds)},
            },
            # A demo's canary (local-swap, 3+ hosts or --canary): a short soak, so the `slow` and
            # `errors` versions are caught while one watches.
            "deploy": {"strategy": o.strategy, "stop_grace_seconds": o.stop_grace_seconds,
                       "canary": {"soak_seconds": SANDBOX_SOAK_SECONDS, "warmup_seconds": 5}},  # a short demo warm-up
            "proxy": {"port": o.proxy_port, "slot_a_port": o.slot_a_port, "slot_b_port": o.slot_b_port},
            "sandbox": {"state_dir": str(self.state_dir)},
        }
        head = (
            "# Written by `zdd-tui sandbox up`: a local stand-in for DigitalOcean (not a real account).\n"
            "# Its API token is a throwaway in sandbox.state_dir/token.\n"
        )
        self.config_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.config_path.with_name(f".{self.config_path.name}.tmp")
        tmp.write_text(head + yaml.safe_dump(doc, sort_keys=False))
        os.replace(tmp, self.config_path)
        load_config(self.config_path)  # fail loudly here if it does not validate

    def _info(self) -> dict:
        assert self.api is not None and self.hosts is not None
        hosts = []
        for d in self.api.state.droplets():
            h = self.hosts.hosts.get(d["name"])
            c = h.serving_container() if h else None
            hosts.append(
                {
                    "name": d["name"],
                    "address": _public_ip(d),
                    "port": self.o.service_port,
                    "tag": c["tag"] if c else None,
                }
            )
        tags = [{"tag": t["tag"], "behaviour": t.get("_behaviour", "ok")} for t in self._tag_records]
        return {
            "api_url": self.api.url,
            "lb_url": self.lb.url if self.lb else None,
            "config": str(self.config_path),
            "hosts": hosts,
            "tags": tags,
        }

    def _write_info(self, running: bool = True) -> None:
        info = {
            **self.info,
            "pid": os.getpid() if running else None,
            "started_at": time.time(),
            "api_port": self.api.port if self.api else None,
            "lb_ports": {i: lb.port for i, lb in self.lbs.items()},
            "state_dir": str(self.state_dir),
        }
        tmp = self.state_dir / f".{INFO_FILE}.tmp"
        tmp.write_text(json.dumps(info, indent=1))
        os.replace(tmp, self.state_dir / INFO_FILE)

    def pids(self) -> list[int]:
        return self.hosts.pids() if self.hosts else []

    async def stop(self) -> None:
        for lb in list(self.lbs.values()):
            await lb.stop()
        self.lbs.clear()
        if self.hosts is not None:
            await self.hosts.shutdown(self.o.host_shutdown_grace)
        if self.api is not None:
            await self.api.stop()
        if self._started:
            self._write_info(running=False)
            self._started = False
        if self._lockfile is not None:
            self._lockfile.close()
            self._lockfile = None



async def _health_status(address: str | None, port: int, path: str) -> int | None:
    """A marked probe (not counted as an LB check): the HTTP status, None when no answer."""
    if not address:
        return None
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(address, port), 1.0)
    except (TimeoutError, OSError):
        return None
    try:
        request = f"GET {path} HTTP/1.1\r\nHost: {address}\r\nX-Zdd-Probe: zdd-sandbox\r\nConnection: close\r\n\r\n"
        writer.write(request.encode())
        line = await asyncio.wait_for(reader.readline(), 2.0)
        parts = line.split()
        return int(parts[1]) if len(parts) >= 2 and parts[1].isdigit() else None
    except (TimeoutError, OSError):
        return None
    finally:
        writer.close()


def _public_ip(droplet: dict) -> str | None:
    for n in (droplet.get("networks") or {}).get("v4") or []:
        if n.get("type") == "public":
            return n.get("ip_address")
    return None


def read_running_info(state_dir: str | Path) -> dict:
    """`<state_dir>/sandbox.json` (URLs, pid) as the last start wrote it; {} when absent."""
    try:
        return json.loads((Path(state_dir) / INFO_FILE).read_text())
    except (OSError, ValueError):
        return {}


__all__ = ["ExternalDroplet", "Sandbox", "SandboxOptions", "read_running_info"]
