"""The console's view of a Project: what the poll tasks call, and the UI's own concerns.

The Project (zdd_tui.project) does the work; this wrapper only adds what the console needs:
where it is connected (in words), the poll periods, per-host time limits so one silent host
cannot hold a refresh back, the droplets seen last (for names), which rollout is its own, and
what to stop when the console closes (the sandbox it started).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from zdd_tui.config import Config
from zdd_tui.events import Event
from zdd_tui.project import Droplet, LoadBalancer, Project, RateLimit, RegistryTag, Versions
from zdd_tui.project.traffic import TrafficHistory, TrafficSampler
from zdd_tui.rollout.events import Outcome, Plan, TrafficSampled
from zdd_tui.ui.poller import Task
from zdd_tui.ui.state import HostState, RolloutInfo

# Refresh periods (seconds). Droplets, the LB and tags change rarely (and cost API requests);
# the LB's health view is polled faster only while a rollout runs; the hosts themselves (no
# API) every 2 s. With one page per list this is ~9 requests/min idle and ~16 during a rollout,
# well under the 40/min budget the poller enforces anyway.
PERIODS: dict[str, tuple[float, float | None, bool]] = {
    # name: (idle period, period during a rollout, costs API requests)
    "droplets": (45.0, 30.0, True),
    "lb": (60.0, None, True),
    "lb_health": (20.0, 5.0, True),
    "tags": (60.0, None, True),
    "hosts": (2.0, None, False),
    "rollout": (2.0, 1.0, False),
    "history": (15.0, None, False),  # the hosts' journals: which versions ran (no API)
    "labels": (60.0, None, True),  # the sandbox's labels for its tags (DigitalOcean: none, no request)
    # The proxies' counters (no API), a slice of a large fleet at a time (project.traffic).
    "traffic": (1.0, None, False),
}

HOST_CONCURRENCY = 32  # probes in flight at once: 200 hosts in ~7 rounds, well inside 2 s locally
HOST_TIMEOUT = 1.5  # a host that does not answer in time shows "unknown", the others still refresh


@dataclass(frozen=True)
class RunHandle:
    """A rollout the console started: cancel it cooperatively via `cancel`."""

    plan: Plan
    cancel: asyncio.Event


def utc_now() -> datetime:
    return datetime.now(UTC)


class FleetSource:
    """Reads the fleet through `project` (every DO API request goes through its client, so
    `requests_made` and `rate_limit` are the client's own figures) and runs its rollouts."""

    def __init__(
        self,
        project: Project,
        *,
        label: str,
        on_close: Callable[[], Awaitable[None]] | None = None,
        wall_now: Callable[[], datetime] = utc_now,
    ):
        self.project = project
        self.config: Config = project.config
        self.sandbox = project.sandbox
        self.label = label  # where we are connected, in words
        self._on_close = on_close
        self._wall_now = wall_now
        self._droplets: list[Droplet] = []
        self._lb: LoadBalancer | None = None
        self._running_id: str | None = None  # our own rollout's id (its lock is not "someone else")
        self.sampler = TrafficSampler(project)

    @property
    def requests_made(self) -> int:
        return self.project.requests_made

    @property
    def rate_limit(self) -> RateLimit | None:
        return self.project.rate_limit

    def wall_now(self) -> datetime:
        """Now, for ages of tags."""
        return self._wall_now()

    def now(self) -> float:
        """Seconds on the engine's clock, for elapsed times."""
        return self.project.clock.now()

    # -- poll tasks ------------------------------------------------------------------------------
    async def droplets(self) -> list[Droplet]:
        self._droplets = await self.project.droplets()
        return self._droplets

    async def load_balancer(self) -> LoadBalancer | None:
        self._lb = await self.project.load_balancer()
        return self._lb

    async def lb_health(self) -> dict[str, bool | None]:
        by_id = await self.project.lb_health(self._lb)
        names = {d.id: d.name for d in self._droplets}
        return {names[i]: h for i, h in by_id.items() if i in names}

    async def registry_tags(self) -> list[RegistryTag]:
        return await self.project.registry_tags()

    async def hosts(self) -> dict[str, HostState]:
        """Each known droplet's own view (direct health probe, its container; its proxy and slot
        containers on a local-swap host): no API request."""
        sem = asyncio.Semaphore(HOST_CONCURRENCY)

        async def one(d: Droplet) -> tuple[str, HostState]:
            async with sem:
                try:
                    st = await asyncio.wait_for(self.project.host_status(d), HOST_TIMEOUT)
                except TimeoutError:
                    return d.name, HostState(error=f"no answer in {HOST_TIMEOUT}s")
                return d.name, HostState(probe=st.health, container=st.container, error=st.error,
                                         draining=bool(st.draining), swap=st.swap)

        return dict(await asyncio.gather(*(one(d) for d in self._droplets)))

    async def rollout(self) -> RolloutInfo | None:
        """A rollout in progress according to the hosts' lock and journal."""
        return await self.project.rollout_seen(self._droplets, self._running_id)

    async def history(self) -> Versions:
        """The versions that ran on the fleet, from the hosts' journals: no API request."""
        if not self._droplets:
            return Versions(ran=[])
        return await self.project.versions(self._droplets, registry=False)

    async def traffic(self) -> TrafficHistory:
        """Each host's recent traffic. During our own rollout the engine reads the proxies (its
        TrafficSampled events come in through `traffic_seen`): reading them twice is waste."""
        if self._running_id is None:
            await self.sampler.sample(self._droplets)
        return self.sampler.history

    def traffic_seen(self, event: TrafficSampled) -> None:
        self.sampler.record(event)

    async def tag_labels(self) -> dict[str, str]:
        return await self.project.tag_labels()

    async def deploy_target(self, tags: list[RegistryTag]) -> tuple[str | None, str]:
        """What `d` deploys and why (the rule, in words)."""
        return await self.project.deploy_target(tags)

    def tasks(self) -> list[Task]:
        """The console's poll tasks (the app and the request-count test share them)."""
        fns: dict[str, Callable[[], Awaitable[Any]]] = {
            "droplets": self.droplets,
            "lb": self.load_balancer,
            "lb_health": self.lb_health,
            "tags": self.registry_tags,
            "hosts": self.hosts,
            "rollout": self.rollout,
            "history": self.history,
            "labels": self.tag_labels,
            "traffic": self.traffic,
        }
        return [Task(name, fns[name], idle, busy, api) for name, (idle, busy, api) in PERIODS.items()]

    # -- actions ---------------------------------------------------------------------------------
    async def plan(self, action: str, tag: str | None) -> Plan:
        """action: deploy | rollback. Raises ZddError (refused, unknown tag, ...)."""
        return await self.project.plan(action, tag)

    async def run(self, plan: Plan, listener: Callable[[Event], Any], cancel: asyncio.Event) -> Outcome:
        self._running_id = plan.rollout_id
        try:
            return await self.project.run(plan, [listener], cancel)
        finally:
            self._running_id = None

    # -- build and push (`b`): the same builder and credentials as `zdd-tui build --push` ------
    def image_builder(self, docker_host: str | None = None) -> Any:
        """An ImageBuilder for the project; the Docker engine is DOCKER_HOST's unless given."""
        return self.project.image_builder(docker_host=docker_host)

    async def push_credentials(self) -> Any:
        """Short-lived read-write registry credentials (one API request), for one push."""
        return await self.project.push_credentials()

    async def logs(self, host: str, tail: int = 200) -> list[str]:
        d = next((d for d in self._droplets if d.name == host), None)
        if d is None:
            raise LookupError(f"no droplet named {host}")
        return await self.project.logs(d, tail)

    async def close(self) -> None:
        try:
            await self.project.close()
        finally:
            if self._on_close is not None:
                await self._on_close()
