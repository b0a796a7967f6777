"""`Project`: one project opened once (config, credentials, the DO client, the cloud's engine view,
host runtimes; the sandbox too). The console and the commands ask it; it owns the connections.

    async with await Project.open(config, context="default") as project:
        print(render_text(await project.status()))

The token comes from the credential chain (zdd_tui.secrets.get_token), which refuses, before any
request, a config whose API URL is not the one the token is bound to; a sandbox config always
gets the sandbox's throwaway token from its own state dir, never the keyring or the environment.
Tests build one from parts (a fake client, cloud, runtimes and clock) with the constructor.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from zdd_tui.config import Config
from zdd_tui.errors import ZddError
from zdd_tui.rollout.interfaces import Clock, HostRuntime, SystemClock

if TYPE_CHECKING:
    from zdd_tui.cloud.models import Droplet, LoadBalancer, RateLimit, RegistryTag
    from zdd_tui.events import Listener
    from zdd_tui.images.build import ImageBuilder
    from zdd_tui.project.state import RolloutSeen, RolloutState
    from zdd_tui.project.status import FleetStatus, HostStatus
    from zdd_tui.project.versions import Versions
    from zdd_tui.rollout.events import Outcome, Plan
    from zdd_tui.rollout.journal import RanVersion
    from zdd_tui.setup.steps import Setup

RuntimeFactory = Callable[["Droplet"], HostRuntime]


def open_runtime(config: Config, droplet: Droplet, **kwargs: Any) -> HostRuntime:
    """A runtime for one droplet: the sandbox's local hosts or Docker over SSH. kwargs go to the
    runtime (the DO client for pull credentials, the context, an SSH pool); each ignores the rest."""
    if config.is_sandbox:
        from zdd_tui.sandbox.runtime import SandboxRuntime

        return SandboxRuntime(config, droplet, **kwargs)
    from zdd_tui.hosts.runtime import DockerSSHRuntime

    return DockerSSHRuntime(config, droplet, **kwargs)


class Project:
    """What the front ends call. `client` is the DO API client (DOClient or a stand-in), `cloud`
    the engine's view of it (rollout.interfaces.Cloud), `runtime_factory` makes a host runtime
    for a droplet, `clock` is the engine's (and the console's elapsed times')."""

    def __init__(
        self,
        config: Config,
        *,
        client: Any,
        cloud: Any,
        runtime_factory: RuntimeFactory,
        context: str | None = None,
        clock: Clock | None = None,
        wallclock: Callable[[], float] | None = None,
        owns_client: bool = True,
    ):
        self.config = config
        self.context = context or config.context
        self.client = client
        self.cloud = cloud
        self.clock: Clock = clock or SystemClock()
        self.wallclock = wallclock
        self._runtime_factory = runtime_factory
        self._runtimes: dict[Any, HostRuntime] = {}
        self._owns_client = owns_client

    @staticmethod
    def preload() -> None:
        """Import what opening needs (blocking; a caller with an event loop runs it in a thread)."""
        import importlib

        for name in ("httpcore", "zdd_tui.cloud.client", "zdd_tui.cloud.adapter", "zdd_tui.sandbox.runtime"):
            try:
                importlib.import_module(name)
            except ImportError:  # opening then reports what is missing
                pass

    @classmethod
    async def open(cls, config: Config, *, context: str | None = None, **runtime_options: Any) -> Project:
        """Connect to the project's API (DigitalOcean or the sandbox's); hosts are reached lazily."""
        from zdd_tui.cloud.adapter import DOCloud
        from zdd_tui.cloud.client import DOClient
        from zdd_tui.secrets import get_token

        context = context or config.context
        client = DOClient(config.digitalocean.api_url, get_token(config, context))
        await client.__aenter__()
        # Runtimes share this client (short-lived registry credentials on each pull) and context.
        options = {"client": client, "context": context, **runtime_options}
        return cls(config, client=client, cloud=DOCloud(client, config), context=context,
                   runtime_factory=lambda d: open_runtime(config, d, **options))

    # -- connections ---------------------------------------------------------------------------
    @property
    def sandbox(self) -> bool:
        return self.config.is_sandbox

    @property
    def requests_made(self) -> int:
        """API requests so far (the console's budget reads it)."""
        return int(getattr(self.client, "requests_made", 0))

    @property
    def rate_limit(self) -> RateLimit | None:
        return getattr(self.client, "rate_limit", None)

    async def droplets(self) -> list[Droplet]:
        """The fleet: droplets carrying the config's tag, sorted by name."""
        return sorted(await self.client.list_droplets(self.config.droplets.tag), key=lambda d: d.name)

    def runtime(self, droplet: Droplet) -> HostRuntime:
        """The (cached) runtime for a droplet."""
        rt = self._runtimes.get(droplet.id)
        if rt is None:
            rt = self._runtime_factory(droplet)
            self._runtimes[droplet.id] = rt
        return rt

    async def host_runtimes(self, droplets: Iterable[Droplet] | None = None) -> dict[str, HostRuntime]:
        """name -> runtime for every droplet of the fleet, sorted by name; ZddError when none."""
        found = list(droplets) if droplets is not None else await self.droplets()
        if not found:
            raise ZddError(f"no droplets tagged '{self.config.droplets.tag}'",
                           "run 'zdd-tui setup' (or 'zdd-tui sandbox up') first")
        return {d.name: self.runtime(d) for d in sorted(found, key=lambda d: d.name)}

    async def close(self) -> None:
        for rt in self._runtimes.values():
            try:
                await rt.close()
            except Exception:  # noqa: BLE001 - closing the rest matters more
                pass
        self._runtimes.clear()
        if self._owns_client and hasattr(self.client, "__aexit__"):
            await self.client.__aexit__(None, None, None)

    async def __aenter__(self) -> Project:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- status ----------------------------------------------------------------------------------
    async def status(self, *, hosts: bool = True) -> FleetStatus:
        """Everything `zdd-tui status` shows, gathered once (a part that fails adds an error)."""
        from zdd_tui.project.status import gather

        return await gather(self, hosts=hosts)

    async def load_balancer(self) -> LoadBalancer | None:
        return await self.cloud.load_balancer()

    async def lb_health(self, lb: LoadBalancer | None) -> dict[int, bool | None]:
        """droplet id -> healthy as the LB sees it (DO's monitoring metric)."""
        return {} if lb is None else await self.client.lb_droplet_health(lb.id)

    async def registry_tags(self) -> list[RegistryTag]:
        reg = self.config.registry
        return await self.client.list_tags(reg.name, reg.repository)

    async def host_status(self, droplet: Droplet) -> HostStatus:
        from zdd_tui.project.status import host_status

        return await host_status(self, droplet)

    async def rollout_state(self, droplets: Iterable[Droplet] | None = None) -> RolloutState:
        """Lock, history, versions that ran, and an interrupted rollout if there is one."""
        from zdd_tui.project.state import state_of

        return await state_of(await self.host_runtimes(droplets))

    async def rollout_seen(self, droplets: list[Droplet], own_id: str | None = None) -> RolloutSeen | None:
        """A rollout in progress per the hosts' lock (and, for someone else's, the journal)."""
        from zdd_tui.project.state import rollout_seen

        return await rollout_seen(self, droplets, own_id)

    async def versions(self, droplets: Iterable[Droplet] | None = None, *, registry: bool = True) -> Versions:
        """The versions that ran on the fleet (from the hosts' journals; no API request) and,
        with `registry`, the registry's tags that never ran and the sandbox's labels."""
        from zdd_tui.project.versions import Versions, ran_versions, with_registry

        state = await self.rollout_state(droplets)
        ran = ran_versions(reversed(state.history))
        if not registry:
            return Versions(ran=ran)
        return with_registry(ran, await self.registry_tags(), await self.tag_labels())

    async def deploy_target(self, tags: Iterable[RegistryTag] | None = None) -> tuple[str | None, str]:
        """What the console's `d` deploys (versions.DEPLOY_RULE) and why, in words; `tags`: the
        registry's (fetched when not given)."""
        import asyncio

        from zdd_tui.errors import UsageError
        from zdd_tui.project.rollout import default_tag
        from zdd_tui.project.versions import deploy_choice

        try:
            head: str | None = await asyncio.to_thread(default_tag)
        except UsageError:
            head = None
        return deploy_choice(tags if tags is not None else await self.registry_tags(), head)

    async def tag_labels(self) -> dict[str, str]:
        """tag -> what it is, for tags that are more than a version: the sandbox's failure modes
        ("fails health", "crashes", "slow"). Empty (and no request) for DigitalOcean."""
        if not self.sandbox:
            return {}
        from zdd_tui.sandbox.labels import tag_labels

        return await tag_labels(self.client, self.config.registry.repository)

    async def logs(self, droplet: Droplet, tail: int = 200, since: float | None = None) -> list[str]:
        """The container's last lines (since `since`, epoch seconds, when given), each made
        visible: anyone its service logs for (a request path, a User-Agent) writes into them."""
        from zdd_tui.text import visible

        rt = self.runtime(droplet)
        lines = await (rt.logs(tail) if since is None else rt.logs(tail, since=since))
        return [visible(line) for line in lines]

    # -- rollouts --------------------------------------------------------------------------------
    async def plan_deploy(self, tag: str | None = None, strategy: str | None = None,
                          canary: bool | None = None) -> Plan:
        """Plan a deploy of `tag` (default: sha- of the current git HEAD); `strategy` overrides
        the config's deploy.strategy, `canary` its deploy.canary.enabled."""
        from zdd_tui.project.rollout import plan_deploy

        return await plan_deploy(self, tag, strategy, canary)

    async def plan_rollback(self, tag: str | None = None, strategy: str | None = None,
                            canary: bool | None = None) -> Plan:
        """Plan a rollback to `tag` (default: the version that ran before the current one)."""
        from zdd_tui.project.rollout import plan_rollback

        return await plan_rollback(self, tag, strategy, canary)

    async def plan(self, action: str, tag: str | None, strategy: str | None = None,
                   canary: bool | None = None) -> Plan:
        """action: deploy | rollback; tag None: each one's default (see plan_deploy, plan_rollback)."""
        if action == "rollback":
            return await self.plan_rollback(tag, strategy, canary)
        return await self.plan_deploy(tag, strategy, canary)

    async def run(self, plan: Plan, listeners: Iterable[Listener] = (), cancel: Any = None, **how: Any) -> Outcome:
        """The pre-deploy hook, then lock the hosts, run the plan through the engine, release the
        lock, then the post-deploy hook (zdd_tui.project.hooks); `how` takes
        zdd_tui.project.rollout.run's keywords (break_lock, options)."""
        from zdd_tui.project.hooks import run_rollout

        return await run_rollout(self, plan, listeners, cancel, **how)

    async def rollback_choices(self) -> list[RanVersion]:
        from zdd_tui.project.rollout import rollback_choices

        return await rollback_choices(self)

    async def break_lock(self) -> list[str]:
        from zdd_tui.project.rollout import break_lock

        return await break_lock(self)

    # -- build and push --------------------------------------------------------------------------
    def image_builder(self, *, project_dir: str | None = None, docker_host: str | None = None) -> ImageBuilder:
        from zdd_tui.project.build import image_builder

        return image_builder(self.config, project_dir=project_dir, docker_host=docker_host)

    async def push_credentials(self) -> Any:
        """Short-lived read-write registry credentials (one API request), for one push."""
        from zdd_tui.project.build import push_credentials

        return await push_credentials(self.client, self.config)

    # -- setup -------------------------------------------------------------------------------
    def setup(self, *, token: str | None = None, **kwargs: Any) -> Setup:
        """The setup wizard on this project's client (or a token typed in)."""
        from zdd_tui.project.setup import open_setup

        return open_setup(self.config, token=token, client=None if token else self.client,
                          context=self.context, **kwargs)
