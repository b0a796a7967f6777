"""The application layer: a `Project` you open once and ask (status, plan, deploy, rollback,
break the lock, build and push, logs, setup). The console (zdd_tui/ui) and the headless commands
(zdd_tui/commands) call only this package; it calls the engine (zdd_tui/rollout) and the
adapters (cloud, hosts, images, setup, sandbox).

    open.py     Project: config, credentials, the DO client, host runtimes (sandbox too)
    status.py   the fleet's status (`zdd-tui status`, text and JSON)
    state.py    the hosts' rollout record: lock, journal, interrupted rollout
    rollout.py  plan, run under the lock, rollback choices, break the lock
    versions.py which versions ran on the fleet (the hosts' journals): what rollback offers;
                what `d` deploys
    build.py    image builder and short-lived push credentials
    setup.py    the setup wizard and its steps

Plain data the front ends render is re-exported here, so they need not reach into the adapters.
"""

from __future__ import annotations

from zdd_tui.cloud.models import Droplet, LoadBalancer, RateLimit, RegistryTag
from zdd_tui.project.open import Project
from zdd_tui.project.state import RolloutSeen
from zdd_tui.project.versions import DEPLOY_RULE, VersionRun, Versions, ago, describe, duration, with_registry
from zdd_tui.rollout.interfaces import Clock, ContainerInfo, HealthProbe, SystemClock

__all__ = [
    "DEPLOY_RULE",
    "Clock",
    "ContainerInfo",
    "Droplet",
    "HealthProbe",
    "LoadBalancer",
    "Project",
    "RateLimit",
    "RegistryTag",
    "RolloutSeen",
    "SystemClock",
    "VersionRun",
    "Versions",
    "ago",
    "describe",
    "duration",
    "with_registry",
]
