"""Choose the host runtime for a config: the sandbox's local hosts or Docker over SSH."""

from __future__ import annotations

from zdd_tui.cloud.models import Droplet
from zdd_tui.config import Config
from zdd_tui.rollout.interfaces import HostRuntime


def open_runtime(config: Config, droplet: Droplet, **kwargs) -> HostRuntime:
    """A runtime for one droplet. kwargs go to the runtime (e.g. the SSH connection pool)."""
    if config.is_sandbox:
        from zdd_tui.sandbox.runtime import SandboxRuntime

        return SandboxRuntime(config, droplet, **kwargs)
    from zdd_tui.hosts.runtime import DockerSSHRuntime

    return DockerSSHRuntime(config, droplet, **kwargs)
