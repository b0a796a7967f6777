"""Where the console's data comes from: the `FleetSource` interface and its Session adapter.

The screens only see a FleetSource. `SessionSource` reads DigitalOcean (or the sandbox's API)
through the Session, the hosts through their runtimes, and runs rollouts through the
engine (`zdd_tui.operations`). `zdd_tui.ui.fake.FakeSource` is the fixed, deterministic one the
snapshot tests and the UI benchmark use.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Awaitable, Callable, Protocol

from zdd_tui.cloud.models import Droplet, LoadBalancer, RateLimit, RegistryTag
from zdd_tui.config import Config
from zdd_tui.events import Event
from zdd_tui.rollout.events import Outcome, Plan
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
}


@dataclass(frozen=True)
class RunHandle:
    """A rollout the console started: cancel it cooperatively via `cancel`."""

    plan: Plan
    cancel: asyncio.Event


class FleetSource(Protocol):
    config: Config
    sandbox: bool
    label: str  # where we are connected, in words

    @property
    def requests_made(self) -> int: ...

    @property
    def rate_limit(self) -> RateLimit | None: ...

    def wall_now(self) -> datetime:
        """Now, for ages of tags (a fixed time in the fake)."""

    def now(self) -> float:
        """Monotonic seconds, for elapsed times (the engine clock's scale)."""

    async def droplets(self) -> list[Droplet]: ...

    async def load_balancer(self) -> LoadBalancer | None: ...

    async def lb_health(self) -> dict[str, bool | None]: ...

    async def registry_tags(self) -> list[RegistryTag]: ...

    async def hosts(self) -> dict[str, HostState]:
        """Each known droplet's own view (direct health probe, its container): no API request."""

    async def rollout(self) -> RolloutInfo | None:
        """A rollout in progress according to the hosts' lock and journal."""

    async def plan(self, action: str, tag: str) -> Plan:
        """action: deploy | rollback. Raises ZddError (refused, unknown tag, ...)."""

    async def run(self, plan: Plan, listener: Callable[[Event], Any], cancel: asyncio.Event) -> Outcome: ...

    async def logs(self, host: str, tail: int = 200) -> list[str]: ...

    async def close(self) -> None: ...

    # Optional (build and push, `b`); a source without them has nothing to push to:
    #   def image_builder(self, docker_host: str | None = None) -> zdd_tui.images.build.ImageBuilder
    #   async def push_credentials(self) -> DockerCredentials  (short-lived, read-write)


def poll_functions(source: FleetSource) -> dict[str, Callable[[], Awaitable[Any]]]:
    return {
        "droplets": source.droplets,
        "lb": source.load_balancer,
        "lb_health": source.lb_health,
        "tags": source.registry_tags,
        "hosts": source.hosts,
        "rollout": source.rollout,
    }


def build_tasks(source: "FleetSource"):
    """The console's poll tasks for a source (the app and the request-count test share this)."""
    from zdd_tui.ui.poller import Task

    fns = poll_functions(source)
    return [Task(name, fns[name], idle, busy, api) for name, (idle, busy, api) in PERIODS.items()]


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


# -- the real thing: a Session (DigitalOcean or the sandbox's API) ----------------------------

HOST_CONCURRENCY = 32  # probes in flight at once: 200 hosts in ~7 rounds, well inside 2 s locally
HOST_TIMEOUT = 1.5  # a host that does not answer in time shows "unknown", the others still refresh


class SessionSource:
    """Reads the fleet through a Session; every DO API request goes through `session.client`
    (so `requests_made` and `rate_limit` are the client's own figures)."""

    def __init__(self, session, *, sandbox: bool, label: str, on_close: Callable[[], Awaitable[None]] | None = None):
        self.session = session
        self.config = session.config
        self.sandbox = sandbox
        self.label = label
        self._on_close = on_close
        self._droplets: list[Droplet] = []
        self._lb: LoadBalancer | None = None
        self._running_id: str | None = None  # our own rollout's id (its lock is not "someone else")
        self._state_at = 0.0

    @property
    def requests_made(self) -> int:
        return self.session.client.requests_made

    @property
    def rate_limit(self) -> RateLimit | None:
        return self.session.client.rate_limit

    def wall_now(self) -> datetime:
        return utc_now()

    def now(self) -> float:
        import time

        return time.monotonic()

    # The fetchers are zdd_tui.fleetstatus's, so `zdd-tui status` and the console agree.
    async def droplets(self) -> list[Droplet]:
        from zdd_tui import fleetstatus

        self._droplets = await fleetstatus.fetch_droplets(self.session)
        return self._droplets

    async def load_balancer(self) -> LoadBalancer | None:
        from zdd_tui import fleetstatus

        self._lb = await fleetstatus.fetch_lb(self.session)
        return self._lb

    async def lb_health(self) -> dict[str, bool | None]:
        from zdd_tui import fleetstatus

        by_id = await fleetstatus.fetch_lb_health(self.session, self._lb)
        names = {d.id: d.name for d in self._droplets}
        return {names[i]: h for i, h in by_id.items() if i in names}

    async def registry_tags(self) -> list[RegistryTag]:
        from zdd_tui import fleetstatus

        return await fleetstatus.fetch_tags(self.session)

    async def hosts(self) -> dict[str, HostState]:
        from zdd_tui import fleetstatus

        sem = asyncio.Semaphore(HOST_CONCURRENCY)

        async def one(d: Droplet) -> tuple[str, HostState]:
            async with sem:
                try:
                    st = await asyncio.wait_for(fleetstatus.fetch_host(self.session, d), HOST_TIMEOUT)
                except asyncio.TimeoutError:
                    return d.name, HostState(error=f"no answer in {HOST_TIMEOUT}s")
                return d.name, HostState(probe=st.health, container=st.container, error=st.error, draining=bool(st.draining))

        return dict(await asyncio.gather(*(one(d) for d in self._droplets)))

    async def rollout(self) -> RolloutInfo | None:
        """The deploy lock, read from the first host (a rollout locks every host or none); when
        someone else holds it, the journal says where each host is. No API request."""
        from zdd_tui.rollout.lock import LOCK_FILE, LockInfo

        if not self._droplets:
            return None
        first = self._droplets[0]
        text = await self.session.runtime(first).state_read(LOCK_FILE)
        if text is None:
            return None
        info = LockInfo.parse(text)
        ours = info.rollout_id == self._running_id
        phases: dict[str, str] = {}
        if not ours:
            from zdd_tui.operations import state_of

            runtimes = {d.name: self.session.runtime(d) for d in self._droplets}
            state = await state_of(runtimes)
            rec = state.running or state.interrupted
            if rec is not None:
                for host, (phase, _detail) in rec.last_step.items():
                    phases[host] = phase
                for host, res in rec.results.items():
                    phases[host] = res.outcome
        return RolloutInfo(holder=info.holder, action=info.action, to_tag=info.version, phases=phases, ours=ours)

    async def plan(self, action: str, tag: str) -> Plan:
        from zdd_tui import operations

        if action == "rollback":
            return await operations.plan_rollback(self.session, tag)
        return await operations.plan_deploy(self.session, tag)

    async def run(self, plan: Plan, listener: Callable[[Event], Any], cancel: asyncio.Event) -> Outcome:
        from zdd_tui import operations

        self._running_id = plan.rollout_id
        try:
            return await operations.run_deploy(self.session, plan, [listener], cancel)
        finally:
            self._running_id = None

    # -- build and push (`b`): the same builder and credentials as `zdd-tui build --push` ------
    def image_builder(self, docker_host: str | None = None):
        """An ImageBuilder for the project (the config's directory holds the git repository and
        the build paths); the Docker engine is DOCKER_HOST's unless given. Nothing is contacted yet."""
        from zdd_tui.images.build import ImageBuilder

        return ImageBuilder(self.config, docker_host=docker_host)

    async def push_credentials(self):
        """Short-lived read-write registry credentials (one API request), for one push."""
        from zdd_tui.commands.build import PUSH_CREDENTIALS_SECONDS

        return await self.session.client.docker_credentials(
            self.config.registry.name, read_write=True, expiry_seconds=PUSH_CREDENTIALS_SECONDS
        )

    async def logs(self, host: str, tail: int = 200) -> list[str]:
        d = next((d for d in self._droplets if d.name == host), None)
        if d is None:
            raise LookupError(f"no droplet named {host}")
        return await self.session.runtime(d).logs(tail)

    async def close(self) -> None:
        try:
            await self.session.close()
        finally:
            if self._on_close is not None:
                await self._on_close()


async def open_session(config: Config):
    """A Session for `config`. The sandbox's throwaway token comes from its state dir (never the
    keyring or DIGITALOCEAN_TOKEN, so a real account's token is never sent to a local API)."""
    from zdd_tui.session import Session

    if config.is_sandbox:
        from zdd_tui.cloud.client import DOClient
        from zdd_tui.cloud.adapter import DOCloud
        from zdd_tui.sandbox.runtime import sandbox_token

        client = DOClient(config.digitalocean.api_url, sandbox_token(config))
        await client.__aenter__()
        return Session(config=config, client=client, fleet=DOCloud(client, config))
    return await Session.open(config)
