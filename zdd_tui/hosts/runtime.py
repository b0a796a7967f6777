"""DockerSSHRuntime: one droplet's app container, admin port and state files, over SSH.

Implements zdd_tui.rollout.interfaces.HostRuntime with the docker CLI on the host (run over
SSH by HostShell), the service's admin/health endpoints through SSH channels to the host's
127.0.0.1, and state files in `<ssh.state_dir>/<app>/` on the host.

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
from collections.abc import Awaitable, Callable
from datetime import datetime
from secrets import token_hex
from typing import Any

from zdd_tui.app_secrets import LABEL as SECRETS_LABEL
from zdd_tui.app_secrets import SecretEnv
from zdd_tui.cloud.models import PULL_CREDENTIALS_SECONDS, DockerCredentials, Droplet
from zdd_tui.config import Config
from zdd_tui.hosts import argv as host_argv
from zdd_tui.hosts.forward import Forwards, NoAnswer
from zdd_tui.hosts.runner import CommandFailed, HostShell, stderr_tail
from zdd_tui.hosts.ssh import AcceptPolicy, SSHPool
from zdd_tui.rollout.interfaces import (
    ContainerInfo,
    HealthProbe,
    ImageInfo,
    ImageNotFound,
    RuntimeFailure,
    ServiceAdmin,
)

# Our own bound on a bounded host command: its `timeout` there, then the KILL after it, and slack.
REMOTE_BOUND_SLACK = 20.0
# `docker run --detach` of a pulled image returns in seconds; the engine allows a start 60 s too.
RUN_BOUND_SECONDS = 60.0

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
        docker_config = await self._pull_config()
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
        digest = await self._repo_digest(host_argv.docker_image_digests(image_ref), image_ref)
        self._digests[image_ref] = digest
        return ImageInfo(ref=image_ref, tag=host_argv.tag_of(image_ref), digest=digest)

    async def _repo_digest(self, argv: list[str], image_ref: str) -> str:
        res = await self.shell.run(argv, check=False)
        if res.exit_status != 0:
            return ""
        try:
            digests = json.loads(res.stdout or "[]") or []
        except ValueError:
            return ""
        want = host_argv.repo_of(image_ref) + "@"
        for d in digests:
            if d.startswith(want):
                return d.split("@", 1)[1]
        return digests[0].split("@", 1)[1] if digests else ""

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

    async def _inspect_raw(self) -> dict | None:
        res = await self.shell.run(host_argv.docker_inspect(self.config.container_name), check=False)
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
        ref = (raw.get("Config") or {}).get("Image", "")
        digest = labels.get("zdd.digest") or None
        if not digest and raw.get("Image"):
            digest = await self._repo_digest(host_argv.docker_image_digests_by_id(raw["Image"]), ref) or None
        st = raw.get("State") or {}
        status = st.get("Status", "unknown")
        return ContainerInfo(
            name=(raw.get("Name") or "").lstrip("/"),
            image_ref=ref,
            tag=labels.get("zdd.tag") or host_argv.tag_of(ref),
            digest=digest,
            state=status,
            started_at=_epoch(st.get("StartedAt")),
            exit_code=None if status == "running" else st.get("ExitCode"),
            restart_count=int(raw.get("RestartCount") or 0),
            secrets=labels.get(SECRETS_LABEL) or None,
        )

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

    async def logs(self, tail: int = 100) -> list[str]:
        res = await self.shell.run(host_argv.docker_logs(self.config.container_name, tail), check=False)
        if res.exit_status != 0:
            if "no such" in res.stdout.lower() or "no such" in res.stderr.lower():
                return []
            raise CommandFailed(self.name, res.argv, res.exit_status, res.stderr or res.stdout)
        return res.stdout.splitlines()

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


def _epoch(ts: str | None) -> float | None:
    """Docker's RFC 3339 time (nanoseconds) -> epoch seconds; its zero time -> None."""
    if not ts or ts.startswith("0001-"):
        return None
    m = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)", ts)
    if not m:
        return None
    frac = float(m.group(2) or 0)
    tz = "+00:00" if m.group(3) == "Z" else m.group(3)
    return datetime.fromisoformat(m.group(1) + tz).timestamp() + frac
