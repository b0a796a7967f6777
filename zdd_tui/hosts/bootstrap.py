"""Bootstrap one host over SSH: pin its key, check (or install) Docker, create the zdd state
directory, check the service and admin ports are free. Every check is reported in words."""

from __future__ import annotations

import json
from collections.abc import Callable

from zdd_tui.cloud.models import Droplet
from zdd_tui.config import Config
from zdd_tui.events import HostReport
from zdd_tui.hosts import argv as host_argv
from zdd_tui.hosts.known_hosts import fingerprint
from zdd_tui.hosts.runner import CommandFailed, HostShell
from zdd_tui.rollout.interfaces import HostUnreachable


async def bootstrap_host(
    config: Config,
    droplet: Droplet,
    pool,
    *,
    install_docker: bool = True,
    progress: Callable[[str], None] = lambda m: None,
    ssh_host: str | None = None,
) -> HostReport:
    host = ssh_host or droplet.public_ipv4 or droplet.private_ipv4 or ""
    checks: dict[str, str] = {}
    ok = True
    shell = HostShell(pool, host, label=droplet.name)
    try:
        conn = await shell.connection()
        key = conn.get_server_host_key()
        checks["host key"] = f"pinned {fingerprint(key)}" if key is not None else "pinned"

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


async def _ours_running(shell: HostShell, config: Config) -> bool:
    res = await shell.run(host_argv.docker_inspect(config.container_name), check=False)
    if res.exit_status != 0:
        return False
    try:
        return bool(json.loads(res.stdout)[0]["State"]["Running"])
    except (ValueError, KeyError, IndexError, TypeError):
        return False
