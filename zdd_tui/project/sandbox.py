"""The embedded sandbox (a local stand-in for DigitalOcean), as `zdd-tui sandbox up` starts it."""

from __future__ import annotations

from zdd_tui.sandbox.registry import DistributionRegistry
from zdd_tui.sandbox.supervisor import CREATE_DELAY, ExternalDroplet, Sandbox, SandboxOptions

__all__ = ["CREATE_DELAY", "DistributionRegistry", "ExternalDroplet", "Sandbox", "SandboxOptions"]
