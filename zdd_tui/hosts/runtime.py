"""DockerSSHRuntime: one droplet's app container, admin port and state files, over SSH.

Implements zdd_tui.rollout.interfaces.HostRuntime and SwapHost with the docker CLI on the host
(run over SSH by HostShell), the service's admin/health endpoints and the proxy's ping and API
through SSH channels to the host's 127.0.0.1, and state files in `<ssh.state_dir>/<app>/` on the
host. The proxy's files and container are described in zdd_tui.hosts.proxy; the slot
containers' names, labels and readings in zdd_tui.hosts.slots.

Registry access: before each pull the runtime asks for short-lived READ-ONLY docker
credentials (DO's docker-credentials endpoint) and sends them on stdin into a DOCKER_CONFIG on
the host's memory-backed storage that exists only for the (bounded) pull. No DO token reaches a
host. The container's environment travels the same way, as an env file that is gone once the
container has started: no value of it is on a command line, in a message or in the journal.
Whatever an interrupted command left there is removed by id afterwards, or by the sweep on the
next connection (see argv.py, "secrets on a host").
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Awaitable, Callable
from secrets import token_hex
from typing import Any

from zdd_tui.app_secrets import LABEL as SECRETS_LABEL
from zdd_tui.app_secrets import SecretEnv
from zdd_tui.cloud.models import PULL_CREDENTIALS_SECONDS, DockerCredentials, Droplet
from zdd_tui.config import Config
from zdd_tui.hosts import argv as host_argv
from zdd_tui.hosts import proxy as host_proxy
from zdd_tui.hosts import slots as host_slots
from zdd_tui.hosts.forward import Forwards, NoAnswer
from zdd_tui.hosts.runner import CommandFailed, HostShell, stderr_tail
from zdd_tui.hosts.ssh import AcceptPolicy, SSHPool
from zdd_tui.proxy import traefik
from zdd_tui.rollout.interfaces import (
    SLOTS,
    ContainerInfo,
    HealthProbe,
    ImageInfo,
    ImageNotFound,
    ProxyStatus,
    RuntimeFailure,
    ServiceAdmin,
)
from zdd_tui.traffic import ProxyCounters, parse_metrics

# Our own bound on a bounded host command: its `timeout` there, then the KILL after it, and slack.
REMOTE_BOUND_SLACK = 20.0
# `docker run --detach` of a pulled image returns in seconds; the engine allows a start 60 s too.
RUN_BOUND_SECONDS = 60.0
# A started proxy answers its ping within a second or two.
PROXY_START_SECONDS = 30.0
# A switch is applied in well under a second (the proxy's file watcher, 50 ms throttle).
SWITCH_SECONDS = 10.0
POLL_SECONDS = 0.1

CredentialsProvider = Callable[[], Awaitable["DockerCredentials | dict | None"]]

_NOT_FOUND = re.compile(
    r"manifest unknown|manifest for \S+ not found|not found: manifest|name unknown|repository does not exist", re.I)


class DockerSSHRuntime(ServiceAdmin):
    """HostRuntime for a droplet reached over SSH with docker installed.

    kw:
      pool: a shared SSHPool (else one is made from the config and owned here);
      accept_new / known_hosts: pinning policy and file when the pool is made here;
      ssh_host / ssh_port: where to connect (default: the droplet's public IPv4, ssh.port);
      address: what the LB targets (default: public IPv4, else private);
      client: an open DOClient for the pull credentials (else one is opened per pull with the
        context's token);
      context: credentials context (default: the config's);
      credentials: an async callable returning DockerCredentials / a docker config dict / None,
        instead of client (the lab passes its registry's auth here);
      registry_auth: False to pull without credentials (a lab registry with no auth);
      on_event: listener for LogLine events (pull output, command output);
      http_timeout: seconds for admin/probe requests.
    """

    def __init__(
        self,
        config: Config,
        droplet: Droplet,
        *,
        pool: SSHPool | None = None,
        accept_new: AcceptPolicy = False,
        known_hosts=None,
        private_key: str | None = None,
        ssh_host: str | None = None,
        ssh_port: int | None = None,
        address: str | None = None,
        client: Any = None,
        credentials: CredentialsProvider | None = None,
        registry_auth: bool = True,
        on_event: Callable[[Any], Any] | None = None,
        http_timeout: float = 5.0,
        context: str | None = None,
        **_ignored: Any,
    ):
        self.config = config
        self.droplet = droplet
        self.name = droplet.name
        self.address = address or droplet.public_ipv4 or droplet.private_ipv4 or ""
        host = ssh_host or droplet.public_ipv4 or droplet.private_ipv4
        if not host:
            raise RuntimeFailure(f"droplet {droplet.name} has no IPv4 address to reach over SSH")
        self._owns_pool = pool is None
        self.context = context or config.context
        self.pool = pool or SSHPool.from_config(
            config, context=self.context, accept_new=accept_new, known_hosts=known_hosts, private_key=private_key
        )
        self.shell = HostShell(self.pool, host, port=ssh_port or config.ssh.port, user=config.ssh.user, label=self.name,
                               on_connect=self._sweep)
        self.forwards = Forwards(self.shell)
        self.state_dir = f"{config.ssh.state_dir.rstrip('/')}/{config.app}"
        self._client = client
        self._credentials = credentials
        self._registry_auth = registry_auth
        self.on_event = on_event
        self.http_timeout = http_timeout
        self._digests: dict[str, str] = {}
        self._secrets = SecretEnv()
        self._metrics_unread = False  # the proxy's metrics failed to parse once (said once)

    # --- logging -------------------------------------------------------------------------

    def _log(self, line: str, level: str = "info") -> None:
        if self.on_event is None:
            return
        from zdd_tui.events import LogLine

        self.on_event(LogLine(host=self.name, line=line, level=level))

    def _stream(self, stream: str, line: str) -> None:
        if line:
            self._log(line, "info")

    # --- images ----------------------------------------------------------------------------

    async def _pull_config(self) -> str | None:
        """A docker config.json (text) with read-only credentials, or None for no auth."""
        if not self._registry_auth:
            return None
        if self._credentials is not None:
            creds = await self._credentials()
        elif self._client is not None:
            creds = await self._client.docker_credentials(
                self.config.registry.name, read_write=False, expiry_seconds=PULL_CREDENTIALS_SECONDS
            )
        else:
            # No client handed in (e.g. a Session's default options): ask DO with the project's token.
            from zdd_tui.cloud.client import DOClient
            from zdd_tui.secrets import get_token

            async with DOClient(self.config.digitalocean.api_url, get_token(self.config, self.context)) as do:
                creds = await do.docker_credentials(
                    self.config.registry.name, read_write=False, expiry_seconds=PULL_CREDENTIALS_SECONDS
                )
        if creds is None:
            return None
        auths = creds.auths if isinstance(creds, DockerCredentials) else creds.get("auths", creds)
        return json.dumps({"auths": auths})

    async def pull(self, image_ref: str) -> ImageInfo:
        tag = host_argv.tag_of(image_ref)
        if tag.startswith("sha-"):
            # An immutable tag already on the host is that very image: no pull, no credentials.
            res = await self.shell.run(host_argv.docker_image_digests(image_ref), check=False)
            if res.exit_status == 0:
                self._log(f"{image_ref}: present on the host, not pulled")
                digest = _pick_digest(res.stdout, image_ref)
                self._digests[image_ref] = digest
                return ImageInfo(ref=image_ref, tag=tag, digest=digest, present=True)
        await self._docker_pull(image_ref, auth=True)
        digest = await self._repo_digest(host_argv.docker_image_digests(image_ref), image_ref)
        self._digests[image_ref] = digest
        return ImageInfo(ref=image_ref, tag=tag, digest=digest)

    async def _docker_pull(self, image_ref: str, *, auth: bool) -> None:
        docker_config = await self._pull_config() if auth else None
        bound = float(self.config.deploy.pull_timeout_seconds)
        secret_id = token_hex(8) if docker_config is not None else None
        argv = host_argv.docker_pull(image_ref, bound_seconds=bound, credentials_id=secret_id)
        self._log(f"docker pull {image_ref}")
        try:
            await self.shell.run(argv, input=docker_config, on_line=self._stream, timeout=bound + REMOTE_BOUND_SLACK)
        except CommandFailed as exc:
            await self._remove_secrets(secret_id)
            if _NOT_FOUND.search(exc.stderr):
                raise ImageNotFound(
                    f"{image_ref}: the registry has no such tag ({stderr_tail(exc.stderr, 2)})") from None
            raise
        except BaseException:
            await self._remove_secrets(secret_id)
            raise

    async def _repo_digest(self, argv: list[str], image_ref: str) -> str:
        res = await self.shell.run(argv, check=False)
        if res.exit_status != 0:
            return ""
        return _pick_digest(res.stdout, image_ref)

    # --- secrets on the host ---------------------------------------------------------------

    async def _remove_secrets(self, secret_id: str | None) -> None:
        """After a command that had secrets on stdin failed or was cut off: remove what it may
        have left (its shell's trap usually did already)."""
        if secret_id is None:
            return
        try:
            await asyncio.wait_for(self.shell.run(host_argv.secrets_remove(secret_id)), 10)
        except Exception as exc:  # noqa: BLE001 - the next connection's sweep removes it, and the
            # failure being handled matters more than this one
            self._log(f"could not remove a secret entry ({type(exc).__name__}); the next connection's sweep will",
                      "warning")

    async def _sweep(self, shell: HostShell) -> None:
        """On each new connection: remove secret entries that interrupted commands left behind."""
        try:
            res = await shell.run(host_argv.secrets_sweep(), timeout=30)
        except Exception as exc:  # noqa: BLE001 - the command that connected reports a real problem
            self._log(f"could not sweep leftover secret entries ({type(exc).__name__})", "warning")
            return
        for entry in res.stdout.split():
            self._log(f"removed {entry}, left by an interrupted command", "warning")

    # --- container -------------------------------------------------------------------------

    async def _inspect_raw(self, name: str | None = None) -> dict | None:
        """`docker container inspect` of one container (default: lb-drain's), None if absent."""
        res = await self.shell.run(host_argv.docker_inspect(name or self.config.container_name), check=False)
        if res.exit_status != 0:
            if "no such" in res.stderr.lower():
                return None
            raise CommandFailed(self.name, res.argv, res.exit_status, res.stderr)
        data = json.loads(res.stdout)
        return data[0] if data else None

    async def inspect(self) -> ContainerInfo | None:
        raw = await self._inspect_raw()
        if raw is None:
            return None
        labels = (raw.get("Config") or {}).get("Labels") or {}
        digest = labels.get("zdd.digest") or None
        if not digest and raw.get("Image"):
            ref = (raw.get("Config") or {}).get("Image", "")
            digest = await self._repo_digest(host_argv.docker_image_digests_by_id(raw["Image"]), ref) or None
        return host_slots.container_info(raw, digest)

    async def run(self, image_ref: str, env: dict[str, str] | None = None) -> ContainerInfo:
        name = self.config.container_name
        current = await self._inspect_raw()
        if current is not None:
            if (current.get("State") or {}).get("Running"):
                raise RuntimeFailure(f"on {self.name}: container {name} is running; stop it before starting another")
            await self.shell.run(host_argv.docker_rm(name, force=True))
        tag = host_argv.tag_of(image_ref)
        merged = self._app_env(env)
        labels = {"zdd.app": self.config.app, "zdd.tag": tag, **self._secrets_labels()}
        digest = self._digests.get(image_ref)
        if digest:
            labels["zdd.digest"] = digest
        if "ZDD_ROLLOUT_ID" in merged:
            labels["zdd.rollout"] = merged["ZDD_ROLLOUT_ID"]
        env_file = host_argv.env_file({**merged, "ZDD_VERSION": merged.get("ZDD_VERSION", tag),
                                       **self._secrets.values})
        secret_id = token_hex(8)
        bound = RUN_BOUND_SECONDS
        argv = host_argv.docker_run(
            name,
            image_ref,
            port=self.config.service.port,
            admin_port=self.config.service.admin_port,
            env_file_id=secret_id,
            bound_seconds=bound,
            labels=labels,
        )
        self._log(f"docker run {name} {image_ref}")
        try:
            await self.shell.run(argv, input=env_file, timeout=bound + REMOTE_BOUND_SLACK)
        except BaseException:
            await self._remove_secrets(secret_id)
            raise
        info = await self.inspect()
        if info is None:
            raise RuntimeFailure(f"on {self.name}: container {name} vanished right after `docker run`")
        return info

    # --- application secrets and the release command -----------------------------------------

    def set_secrets(self, secrets: SecretEnv | None) -> None:
        self._secrets = secrets or SecretEnv()

    def _app_env(self, env: dict[str, str] | None) -> dict[str, str]:
        """The container's environment without its secrets (they join only the env file's text)."""
        return {**self.config.service.env, **(env or {})}

    def _secrets_labels(self) -> dict[str, str]:
        return {SECRETS_LABEL: self._secrets.label} if self._secrets.label else {}

    async def release(self, image_ref: str, argv: list[str], env: dict[str, str] | None = None,
                      on_line: Callable[[str], Any] | None = None) -> tuple[int, list[str]]:
        tag = host_argv.tag_of(image_ref)
        merged = self._app_env(env)
        env_file = host_argv.env_file({**merged, "ZDD_VERSION": merged.get("ZDD_VERSION", tag),
                                       **self._secrets.values})
        secret_id = token_hex(8)
        bound = float(self.config.deploy.release_timeout_seconds)
        labels = {"zdd.app": self.config.app, "zdd.tag": tag, "zdd.release": "1"}
        cmd = host_argv.docker_release(image_ref, argv, env_file_id=secret_id, bound_seconds=bound, labels=labels)
        lines: list[str] = []

        def line(_stream: str, text: str) -> None:
            lines.append(text)
            if on_line is not None:
                on_line(text)

        try:
            res = await self.shell.run(cmd, input=env_file, on_line=line, check=False,
                                       timeout=bound + REMOTE_BOUND_SLACK)
        except BaseException:
            await self._remove_secrets(secret_id)
            raise
        if res.exit_status != 0:
            await self._remove_secrets(secret_id)
        return res.exit_status, lines

    async def stop(self, grace_seconds: float) -> None:
        name = self.config.container_name
        if await self._inspect_raw() is None:
            return
        self._log(f"docker stop -t {grace_seconds:g} {name}")
        res = await self.shell.run(host_argv.docker_stop(name, grace_seconds), check=False, timeout=grace_seconds + 60)
        if res.exit_status != 0 and "no such" not in res.stderr.lower():
            raise CommandFailed(self.name, res.argv, res.exit_status, res.stderr)
        res = await self.shell.run(host_argv.docker_rm(name), check=False)
        if res.exit_status != 0 and "no such" not in res.stderr.lower():
            raise CommandFailed(self.name, res.argv, res.exit_status, res.stderr)

    async def logs(self, tail: int = 100, *, since: float | None = None) -> list[str]:
        res = await self.shell.run(host_argv.docker_logs(self.config.container_name, tail, since), check=False)
        if res.exit_status != 0 and _no_such(res):
            # No container of the fixed name: a local-swap host, whose app is in its slots.
            name = await self._newest_slot_container()
            if name is None:
                return []
            res = await self.shell.run(host_argv.docker_logs(name, tail, since), check=False)
            if res.exit_status != 0 and _no_such(res):
                return []  # removed in between
        if res.exit_status != 0:
            raise CommandFailed(self.name, res.argv, res.exit_status, res.stderr or res.stdout)
        return res.stdout.splitlines()

    async def _newest_slot_container(self) -> str | None:
        """The slot container started last: during a deploy the new one (whose output a failure
        quotes, even once it has exited), else the one that serves."""
        started = [c for c in await self.slot_containers() if c.started_at is not None]
        # (A tie, to the clock's resolution: the live one.)
        newest = max(started, key=lambda c: (c.started_at or 0.0, c.state in ("running", "restarting")), default=None)
        return newest.name if newest else None

    # --- the service's endpoints (through SSH channels) ------------------------------------

    async def _admin_get(self, path: str) -> dict | None:
        try:
            ans = await self.forwards.request("GET", self.config.service.admin_port, path, timeout=self.http_timeout)
            return ans.json() if ans.status == 200 else None
        except (NoAnswer, TimeoutError, ValueError):
            return None

    async def _admin_post(self, path: str) -> None:
        try:
            ans = await self.forwards.request("POST", self.config.service.admin_port, path, timeout=self.http_timeout)
        except (NoAnswer, TimeoutError) as exc:
            raise RuntimeFailure(
                f"on {self.name}: POST {path} to the admin port 127.0.0.1:{self.config.service.admin_port} failed: "
                f"{type(exc).__name__} {exc}".rstrip()
            ) from None
        if ans.status != 200:
            raise RuntimeFailure(f"on {self.name}: POST {path} answered HTTP {ans.status}: {ans.body[:200]}")

    async def probe_health(self) -> HealthProbe:
        port = self.config.health_port
        path = self.config.load_balancer.health_check.path
        try:
            ans = await self.forwards.request(
                "GET", port, path, headers={"X-Zdd-Probe": "zdd-tui"}, timeout=self.http_timeout
            )
        except TimeoutError:
            return HealthProbe(False, None, f"timeout after {self.http_timeout:g}s")
        except NoAnswer as exc:
            return HealthProbe(False, None, f"no answer on 127.0.0.1:{port} ({exc})")
        detail = ans.body.strip()[:200]
        return HealthProbe(200 <= ans.status < 400, ans.status, detail)

    # --- local-swap: the proxy --------------------------------------------------------------

    async def _get(self, port: int, path: str, headers: dict[str, str] | None = None):
        """GET on the host's 127.0.0.1:port; None when nothing answers HTTP in time."""
        try:
            return await self.forwards.request("GET", port, path, headers=headers, timeout=self.http_timeout)
        except (NoAnswer, TimeoutError):
            return None

    async def _ping(self) -> tuple[bool, str]:
        port = self.config.proxy.port
        ans = await self._get(port, traefik.PING_PATH)
        if ans is None:
            return False, f"no answer on 127.0.0.1:{port}{traefik.PING_PATH}"
        if ans.status == 200 and ans.body.strip() == "OK":
            return True, ""
        return False, f"127.0.0.1:{port}{traefik.PING_PATH} answered HTTP {ans.status}"

    async def _router_slot(self) -> str | None:
        ans = await self._get(self.config.proxy.port, traefik.ROUTER_PATH)
        return traefik.active_slot_from_router(ans.body) if ans is not None and ans.status == 200 else None

    async def proxy(self) -> ProxyStatus:
        name = host_proxy.container_name(self.config)
        try:
            raw = await self._inspect_raw(name)
        except CommandFailed as exc:
            return ProxyStatus(False, False, False, None, f"cannot inspect {name}: {exc}")
        if raw is None:
            return ProxyStatus(False, False, False, None, f"no proxy container {name} on the host")
        st = raw.get("State") or {}
        if not st.get("Running"):
            return ProxyStatus(True, False, False, None,
                               f"proxy container {name} is {st.get('Status', 'not running')}")
        healthy, detail = await self._ping()
        return ProxyStatus(True, True, healthy, await self._router_slot() if healthy else None, detail)

    async def _write_proxy_file(self, directory: str, name: str, text: str) -> bool:
        """Replace the file atomically (stdin, temp file + rename); False when it was already so."""
        res = await self.shell.run(host_argv.proxy_file_write(directory, name), input=text,
                                   ok_statuses=(0, host_argv.EXIT_UNCHANGED))
        return res.exit_status == 0

    async def _ensure_image(self, ref: str) -> None:
        """Pull `ref` unless the host has it; with the app's registry credentials when it is on
        the app's registry (e.g. a mirrored proxy image), else anonymously (a public image)."""
        res = await self.shell.run(host_argv.docker_image_digests(ref), check=False)
        if res.exit_status == 0:
            return
        await self._docker_pull(ref, auth=host_argv.registry_of(ref) == self.config.registry.server)

    async def _port_holder(self, port: int) -> str | None:
        """What listens on the host's TCP `port`, in words; None when nothing does."""
        res = await self.shell.run(host_argv.port_free(port), check=False)
        if res.exit_status == 0:
            return None
        seen = (res.stdout.strip().splitlines() or [f"exit status {res.exit_status}"])[0][:200]
        try:
            single = await self._inspect_raw()
        except CommandFailed:
            single = None
        if single is not None and (single.get("State") or {}).get("Running"):
            return (f"{seen} (the lb-drain app container {self.config.container_name} runs on this host: "
                    "a local-swap deploy adopts it)")
        return seen

    async def install_proxy(self, slot: str | None) -> ProxyStatus:
        """Write the proxy's files and make its container run them, then wait for its ping.

        `slot` None keeps an upstream already configured on the host (a second bootstrap must
        not take traffic away from a serving host); with no configuration yet, there is none.
        """
        if slot is not None and slot not in SLOTS:
            raise ValueError(f"unknown slot {slot!r}")
        lay = host_proxy.layout(self.config)
        name = host_proxy.container_name(self.config)
        image = self.config.proxy.image
        static_changed = await self._write_proxy_file(lay.dir, host_proxy.STATIC_FILE,
                                                      host_proxy.static_text(self.config))
        expect, kept = slot, None
        if slot is None:
            kept = await self._read_at(lay.dynamic_dir, traefik.DYNAMIC_FILE)
            expect = traefik.slot_of_dynamic(kept)
        if slot is not None or kept is None:
            await self._write_proxy_file(lay.dynamic_dir, traefik.DYNAMIC_FILE,
                                         host_proxy.dynamic_text(self.config, slot))
        raw = await self._inspect_raw(name)
        running = raw is not None and bool((raw.get("State") or {}).get("Running"))
        if raw is not None:
            current = (raw.get("Config") or {}).get("Image")
            why = ("its image is not proxy.image" if current != image else
                   "its static configuration changed" if static_changed else
                   None if running else "it is not running")
            if why is None:
                return await self._wait_proxy(name, expect)
            self._log(f"replacing the proxy container {name}: {why}", "warning")
            await self.shell.run(host_argv.docker_rm(name, force=True))
        await self._ensure_image(image)
        for port, key in ((self.config.service.port, "service.port"), (self.config.proxy.port, "proxy.port")):
            held = await self._port_holder(port)
            if held is not None:
                raise RuntimeFailure(f"on {self.name}: the proxy cannot listen on port {port} ({key}): it is taken: "
                                     f"{held}")
        self._log(f"docker run {name} {image}")
        await self.shell.run(host_argv.docker_run_proxy(
            name, image, config_dir=lay.dir, mount=host_proxy.PROXY_MOUNT, config_file=host_proxy.config_file(),
            app=self.config.app, bound_seconds=RUN_BOUND_SECONDS), timeout=RUN_BOUND_SECONDS + REMOTE_BOUND_SLACK)
        return await self._wait_proxy(name, expect)

    async def _wait_proxy(self, name: str, slot: str | None) -> ProxyStatus:
        """Until its ping answers and, when its file names a slot, its router does too: the ping
        answers as soon as it listens, the router only once the file is applied (404 before)."""
        deadline = time.monotonic() + PROXY_START_SECONDS
        while True:
            healthy, detail = await self._ping()
            if healthy:
                st = await self.proxy()
                if slot is None or st.active_slot == slot:
                    return st
                detail = f"its API names {f'slot {st.active_slot}' if st.active_slot else 'no slot'}, not slot {slot}"
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        res = await self.shell.run(host_argv.docker_logs(name, 10), check=False)
        said = " | ".join(ln.strip() for ln in res.stdout.splitlines() if ln.strip())[-600:]
        raise RuntimeFailure(f"on {self.name}: the proxy {name} is not healthy {PROXY_START_SECONDS:g}s after its "
                             f"start: {detail}" + (f"; its last output: {said}" if said else ""))

    async def _read_at(self, directory: str, name: str) -> str | None:
        res = await self.shell.run(host_argv.state_read(directory, name), ok_statuses=(0, host_argv.EXIT_ABSENT))
        return None if res.exit_status == host_argv.EXIT_ABSENT else res.stdout

    async def switch(self, slot: str) -> None:
        if slot not in SLOTS:
            raise ValueError(f"unknown slot {slot!r}")
        lay = host_proxy.layout(self.config)
        await self._write_proxy_file(lay.dynamic_dir, traefik.DYNAMIC_FILE, host_proxy.dynamic_text(self.config, slot))
        deadline = time.monotonic() + SWITCH_SECONDS
        while (seen := await self._router_slot()) != slot:
            if time.monotonic() > deadline:
                raise RuntimeFailure(
                    f"on {self.name}: the proxy still sends traffic to {f'slot {seen}' if seen else 'no slot'} "
                    f"{SWITCH_SECONDS:g}s after its configuration named slot {slot} "
                    f"({lay.dynamic_path}; its API: 127.0.0.1:{self.config.proxy.port}{traefik.ROUTER_PATH})")
            await asyncio.sleep(POLL_SECONDS)
        self._log(f"the proxy sends traffic to slot {slot}")

    async def in_flight(self, slot: str) -> int | None:
        port = host_proxy.slot_ports(self.config)[slot]
        try:
            res = await self.shell.run(host_argv.sockets_established(port, host_proxy.UPSTREAM_HOST), check=False)
        except RuntimeFailure:
            return None
        return host_slots.count_lines(res.stdout) if res.exit_status == 0 else None

    # --- local-swap: the slot containers ---------------------------------------------------

    async def _slot_raw(self) -> list[dict]:
        res = await self.shell.run(host_argv.docker_slot_ids(self.config.app))
        ids = res.stdout.split()
        if not ids:
            return []
        res = await self.shell.run(host_argv.docker_inspect_ids(ids), check=False)
        if res.exit_status != 0 and "no such" not in res.stderr.lower():
            raise CommandFailed(self.name, res.argv, res.exit_status, res.stderr)
        # One removed between the two commands: docker prints the others and fails.
        data = json.loads(res.stdout or "[]") or []
        return [d for d in data if isinstance(d, dict)]

    async def slot_containers(self) -> list[ContainerInfo]:
        infos = [host_slots.container_info(raw) for raw in await self._slot_raw()]
        return sorted((c for c in infos if c.slot is not None),
                      key=lambda c: (c.slot or "", -(c.started_at or 0.0), c.name))

    async def run_slot(self, slot: str, image_ref: str, env: dict[str, str] | None = None) -> ContainerInfo:
        if slot not in SLOTS:
            raise ValueError(f"unknown slot {slot!r}")
        live = host_slots.live_on((host_slots.container_info(r) for r in await self._slot_raw()), slot)
        if live:
            raise RuntimeFailure(f"on {self.name}: slot {slot} runs {', '.join(c.name for c in live)}; "
                                 "stop it before starting another there")
        tag = host_argv.tag_of(image_ref)
        name = host_slots.container_name(self.config.container_name, slot, tag)
        port = host_proxy.slot_ports(self.config)[slot]
        port_env = self.config.service.port_env
        merged = self._app_env(env)
        # Secrets join the env file's text only (a rotated one means a new container, not a start).
        env_text = host_argv.env_file({**merged, "ZDD_VERSION": merged.get("ZDD_VERSION", tag),
                                       **self._secrets.values},
                                      fixed=(*host_argv.FIXED_ENV, port_env))
        want = host_slots.env_lines(env_text, {port_env: str(port)})
        existing = await self._inspect_raw(name)
        if existing is not None:
            if host_slots.same_start(existing, slot=slot, image_ref=image_ref, want_env=want):
                self._log(f"docker start {name} (kept from before: the same version, slot and environment)")
                await self.shell.run(host_argv.docker_start(name, bound_seconds=RUN_BOUND_SECONDS),
                                     timeout=RUN_BOUND_SECONDS + REMOTE_BOUND_SLACK)
                return await self._slot_info(name)
            await self.shell.run(host_argv.docker_rm(name, force=True))
        labels = {"zdd.app": self.config.app, "zdd.slot": slot, "zdd.port": str(port), "zdd.tag": tag,
                  "zdd.env": host_slots.env_names(want), **self._secrets_labels()}
        digest = self._digests.get(image_ref)
        if digest:
            labels["zdd.digest"] = digest
        if "ZDD_ROLLOUT_ID" in merged:
            labels["zdd.rollout"] = merged["ZDD_ROLLOUT_ID"]
        secret_id = token_hex(8)
        argv = host_argv.docker_run_slot(name, image_ref, port_env=port_env, port=port, env_file_id=secret_id,
                                         bound_seconds=RUN_BOUND_SECONDS, labels=labels)
        self._log(f"docker run {name} {image_ref} ({port_env}={port})")
        try:
            await self.shell.run(argv, input=env_text, timeout=RUN_BOUND_SECONDS + REMOTE_BOUND_SLACK)
        except BaseException:
            await self._remove_secrets(secret_id)
            raise
        return await self._slot_info(name)

    async def _slot_info(self, name: str) -> ContainerInfo:
        raw = await self._inspect_raw(name)
        if raw is None:
            raise RuntimeFailure(f"on {self.name}: container {name} vanished right after it started")
        return host_slots.container_info(raw)

    async def probe_slot(self, slot: str) -> HealthProbe:
        port = host_proxy.slot_ports(self.config)[slot]
        path = self.config.load_balancer.health_check.path
        try:
            ans = await self.forwards.request("GET", port, path, headers={"X-Zdd-Probe": "zdd-tui"},
                                              timeout=self.http_timeout)
        except TimeoutError:
            return HealthProbe(False, None, f"timeout after {self.http_timeout:g}s")
        except NoAnswer as exc:
            return HealthProbe(False, None, f"no answer on 127.0.0.1:{port} ({exc})")
        return HealthProbe(200 <= ans.status < 400, ans.status, ans.body.strip()[:200])

    async def stop_slot(self, slot: str, grace_seconds: float) -> None:
        infos = [host_slots.container_info(r) for r in await self._slot_raw()]
        for c in host_slots.live_on(infos, slot):
            self._log(f"docker stop -t {grace_seconds:g} {c.name}")
            res = await self.shell.run(host_argv.docker_stop(c.name, grace_seconds), check=False,
                                       timeout=grace_seconds + 60)
            if res.exit_status != 0 and "no such" not in res.stderr.lower():
                raise CommandFailed(self.name, res.argv, res.exit_status, res.stderr)

    async def remove_container(self, name: str) -> None:
        if not name.startswith(f"{self.config.container_name}-") or name == host_proxy.container_name(self.config):
            raise RuntimeFailure(f"on {self.name}: {name} is not one of this app's slot containers")
        self._log(f"docker rm --force {name}")
        res = await self.shell.run(host_argv.docker_rm(name, force=True), check=False)
        if res.exit_status != 0 and "no such" not in res.stderr.lower():
            raise CommandFailed(self.name, res.argv, res.exit_status, res.stderr)

    async def traffic(self) -> ProxyCounters | None:
        # The proxy's metrics through an SSH channel and one `ss` for both slots, at once.
        got = await asyncio.gather(self._get(self.config.proxy.port, traefik.METRICS_PATH),
                                   self._in_flight_all(), return_exceptions=True)
        metrics, flying = got
        if isinstance(metrics, BaseException):
            raise metrics
        if isinstance(flying, BaseException):
            raise flying
        if metrics is None or metrics.status != 200:
            return None
        try:
            slots = parse_metrics(metrics.body)
        except ValueError as exc:
            if not self._metrics_unread:  # once: it is sampled every second
                self._log(f"the proxy's metrics on 127.0.0.1:{self.config.proxy.port} could not be read: {exc}",
                          "warning")
            self._metrics_unread = True
            return None
        return ProxyCounters(slots=slots, in_flight=flying)

    async def _in_flight_all(self) -> dict[str, int | None]:
        """Each slot's requests in flight (as `in_flight`), with one command on the host."""
        ports = host_proxy.slot_ports(self.config)
        try:
            res = await self.shell.run(
                host_argv.sockets_established_to(list(ports.values()), host_proxy.UPSTREAM_HOST), check=False)
        except RuntimeFailure:
            return dict.fromkeys(ports)
        if res.exit_status != 0:
            return dict.fromkeys(ports)
        counts = host_slots.count_by_port(res.stdout)
        return {slot: counts.get(port, 0) for slot, port in ports.items()}

    async def prune(self, keep: int) -> list[str]:
        infos = [host_slots.container_info(r) for r in await self._slot_raw()]
        infos = [c for c in infos if c.slot is not None]
        gone = host_slots.to_prune(infos, keep)
        removed: list[str] = []
        for c in gone:
            res = await self.shell.run(host_argv.docker_rm(c.name), check=False)
            if res.exit_status == 0 or "no such" in res.stderr.lower():
                removed.append(c.name)
                self._log(f"removed {c.name} (stopped; beyond the newest {keep} kept)")
            else:
                self._log(f"could not remove {c.name}: {res.stderr.strip()[:200]}", "warning")
        kept_refs = {c.image_ref for c in infos if c.name not in removed}
        for ref in sorted({c.image_ref for c in gone if c.name in removed} - kept_refs):
            # docker refuses while any container (the proxy, lb-drain's) still uses it: kept then.
            res = await self.shell.run(host_argv.docker_image_rm(ref), check=False)
            if res.exit_status == 0:
                self._log(f"removed image {ref} (no container uses it)")
        return removed

    # --- state files -----------------------------------------------------------------------

    async def state_read(self, name: str) -> str | None:
        res = await self.shell.run(host_argv.state_read(self.state_dir, name), ok_statuses=(0, host_argv.EXIT_ABSENT))
        return None if res.exit_status == host_argv.EXIT_ABSENT else res.stdout

    async def state_create(self, name: str, content: str) -> bool:
        res = await self.shell.run(host_argv.state_create(self.state_dir, name), input=content,
                                   ok_statuses=(0, host_argv.EXIT_EXISTS))
        return res.exit_status == 0

    async def state_write(self, name: str, content: str) -> None:
        await self.shell.run(host_argv.state_write(self.state_dir, name), input=content)

    async def state_append(self, name: str, line: str) -> None:
        await self.shell.run(host_argv.state_append(self.state_dir, name), input=line.rstrip("\n") + "\n")

    async def state_remove(self, name: str) -> None:
        await self.shell.run(host_argv.state_remove(self.state_dir, name))

    async def close(self) -> None:
        self.forwards.close()
        if self._owns_pool:
            await self.pool.close()


def _no_such(res) -> bool:
    """docker said the container does not exist."""
    return "no such" in res.stdout.lower() or "no such" in res.stderr.lower()


def _pick_digest(stdout: str, image_ref: str) -> str:
    """The registry digest of `image_ref` from `docker image inspect`'s RepoDigests JSON."""
    try:
        digests = json.loads(stdout or "[]") or []
    except ValueError:
        return ""
    want = host_argv.repo_of(image_ref) + "@"
    for d in digests:
        if d.startswith(want):
            return d.split("@", 1)[1]
    return digests[0].split("@", 1)[1] if digests else ""
