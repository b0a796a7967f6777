"""Bootstrap one host over SSH: pin its key, wait for cloud-init to finish, check (or install)
Docker, create the zdd state directory, check the service and admin ports are free (lb-drain),
or start the proxy and check the slots' ports (local-swap). Every check is reported in words."""

from __future__ import annotations

import json
from collections.abc import Callable

from zdd_tui.cloud.models import Droplet
from zdd_tui.config import Config
from zdd_tui.events import HostReport
from zdd_tui.hosts import argv as host_argv
from zdd_tui.hosts.known_hosts import fingerprint
from zdd_tui.hosts.runner import CommandFailed, HostShell
from zdd_tui.rollout.interfaces import HostUnreachable, RuntimeFailure

# How long a host's cloud-init may still run when bootstrap reaches it (Docker from apt takes
# a minute or two on a new droplet).
CLOUD_INIT_TIMEOUT = 600.0


async def bootstrap_host(
    config: Config,
    droplet: Droplet,
    pool,
    *,
    install_docker: bool = True,
    progress: Callable[[str], None] = lambda m: None,
    ssh_host: str | None = None,
    cloud_init_timeout: float = CLOUD_INIT_TIMEOUT,
) -> HostReport:
    host = ssh_host or droplet.public_ipv4 or droplet.private_ipv4 or ""
    checks: dict[str, str] = {}
    if not host:
        checks["address"] = f"none yet (droplet {droplet.status}): run setup again in a moment"
        return HostReport(step="bootstrap", host=droplet.name, address="", ok=False, checks=checks)
    ok = True
    shell = HostShell(pool, host, label=droplet.name)
    try:
        conn = await shell.connection()
        key = conn.get_server_host_key()
        checks["host key"] = f"pinned {fingerprint(key)}" if key is not None else "pinned"

        # Before anything that may use apt: cloud-init installs packages on a new droplet and
        # holds the dpkg lock while it does.
        waited = await _wait_cloud_init(shell, cloud_init_timeout, progress)
        checks["cloud-init"] = waited
        if waited.startswith("still running"):
            return HostReport(step="bootstrap", host=droplet.name, address=host, ok=False, checks=checks)

        progress("checking Docker")
        res = await shell.run(host_argv.docker_present(), check=False)
        if res.exit_status == 0 and res.stdout.strip():
            checks["docker"] = f"present (engine {res.stdout.strip()})"
        elif install_docker:
            progress("installing Docker (apt-get install docker.io)")
            await shell.run(host_argv.install_docker_apt(), timeout=900)
            res = await shell.run(host_argv.docker_present(), check=False)
            if res.exit_status == 0 and res.stdout.strip():
                checks["docker"] = f"installed (engine {res.stdout.strip()})"
            else:
                ok = False
                checks["docker"] = "installed but the engine does not answer"
        else:
            ok = False
            checks["docker"] = "missing (not installed: installing was not allowed)"

        state_dir = f"{config.ssh.state_dir.rstrip('/')}/{config.app}"
        progress(f"creating {state_dir}")
        await shell.run(host_argv.state_init(state_dir))
        checks["state dir"] = f"{state_dir} ready"

        if config.deploy.strategy == "local-swap":
            ok = await _bootstrap_proxy(config, droplet, pool, host, checks, progress) and ok
            return HostReport(step="bootstrap", host=droplet.name, address=host, ok=ok, checks=checks)

        for label, port in (("service port", config.service.port), ("admin port", config.service.admin_port)):
            res = await shell.run(host_argv.port_free(port), check=False)
            if res.exit_status == 0:
                checks[f"{label} {port}"] = "free"
            elif res.exit_status == 1 and await _ours_running(shell, config):
                checks[f"{label} {port}"] = f"in use by zdd's container {config.container_name} (fine)"
            else:
                ok = False
                first = (res.stdout.strip().splitlines() or ["?"])[0]
                checks[f"{label} {port}"] = "in use by another process: " + first[:120]
    except HostUnreachable as exc:
        ok = False
        checks["ssh"] = str(exc)
    except CommandFailed as exc:
        ok = False
        checks["command"] = str(exc)
    return HostReport(step="bootstrap", host=droplet.name, address=host, ok=ok, checks=checks)


async def _bootstrap_proxy(config: Config, droplet: Droplet, pool, host: str, checks: dict[str, str],
                           progress: Callable[[str], None]) -> bool:
    """local-swap: start the proxy (no upstream yet, or the one the host already has) and check
    the slots' ports. A host that serves with lb-drain's single container keeps doing so: the
    first local-swap deploy adopts it."""
    from zdd_tui.events import LogLine
    from zdd_tui.hosts.runtime import DockerSSHRuntime

    def said(event: object) -> None:
        if isinstance(event, LogLine):
            progress(event.line)

    ok = True
    rt = DockerSSHRuntime(config, droplet, pool=pool, ssh_host=host, on_event=said)
    try:
        if await _ours_running(rt.shell, config):
            checks["proxy"] = (f"not installed yet: lb-drain's container {config.container_name} serves port "
                               f"{config.service.port}; the first local-swap deploy adopts this host")
        else:
            progress(f"starting the proxy ({config.proxy.image}) on port {config.service.port}")
            try:
                st = await rt.install_proxy(None)
            except RuntimeFailure as exc:
                ok = False
                checks["proxy"] = str(exc)
            else:
                where = f"slot {st.active_slot}" if st.active_slot else "no slot yet (the first deploy starts one)"
                checks["proxy"] = (f"running ({config.proxy.image}) on port {config.service.port}, healthy; "
                                   f"sends traffic to {where}")
        live = {c.port: c.name for c in await rt.slot_containers() if c.state in ("running", "restarting")}
        for slot, port in (("a", config.proxy.slot_a_port), ("b", config.proxy.slot_b_port)):
            res = await rt.shell.run(host_argv.port_free(port), check=False)
            if res.exit_status == 0:
                checks[f"slot {slot} port {port}"] = "free"
            elif port in live:
                checks[f"slot {slot} port {port}"] = f"in use by zdd's container {live[port]} (fine)"
            else:
                ok = False
                first = (res.stdout.strip().splitlines() or ["?"])[0]
                checks[f"slot {slot} port {port}"] = "in use by another process: " + first[:120]
    finally:
        await rt.close()
    return ok


async def _wait_cloud_init(shell: HostShell, timeout: float, progress: Callable[[str], None]) -> str:
    """What was waited for, in words (a host without cloud-init passes at once)."""
    progress(f"waiting for cloud-init to finish (`cloud-init status --wait`, up to {timeout:.0f}s)")
    try:
        # The host's own `timeout` ends the wait; the runner's bound only covers a silent host.
        res = await shell.run(host_argv.cloud_init_wait(int(timeout)), check=False, timeout=timeout + 30)
    except RuntimeFailure:
        res = None
    if res is not None and res.exit_status == host_argv.EXIT_NOT_FOUND:
        return "not installed: nothing to wait for"
    if res is None or res.exit_status == host_argv.EXIT_TIMED_OUT:
        return (f"still running after {timeout:.0f}s (`cloud-init status --wait`): "
                "wait for the droplet's first boot to finish, then run setup again")
    said = [ln.strip() for ln in res.stdout.splitlines() if ln.strip().startswith("status:")]
    status = said[-1] if said else f"exit status {res.exit_status}"
    return f"finished ({status}; waited with `cloud-init status --wait`)"


async def _ours_running(shell: HostShell, config: Config) -> bool:
    res = await shell.run(host_argv.docker_inspect(config.container_name), check=False)
    if res.exit_status != 0:
        return False
    try:
        return bool(json.loads(res.stdout)[0]["State"]["Running"])
    except (ValueError, KeyError, IndexError, TypeError):
        return False
