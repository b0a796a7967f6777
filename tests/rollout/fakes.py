"""A virtual-time world for engine unit tests: a fake clock, hosts running a fake service, an LB
that health-checks them with DO's threshold semantics, and steady traffic through it that counts
every request sent to a host that cannot answer.

The clock only advances when every task is blocked on it, so concurrent host cycles see one
consistent time line.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from dataclasses import dataclass, field

from zdd_tui.rollout.interfaces import (
    ContainerInfo,
    HealthChecker,
    HealthProbe,
    ImageInfo,
    ImageNotFound,
    LBSettings,
    RuntimeFailure,
    ServiceStats,
)

REPO = "registry.test/reg/app"


def ref(tag: str) -> str:
    return f"{REPO}:{tag}"


class Deadlock(Exception):
    pass


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0
        self._seq = itertools.count()
        self._heap: list = []  # (time, seq, kind, payload)

    def now(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        fut = asyncio.get_running_loop().create_future()
        heapq.heappush(self._heap, (self.t + max(0.0, seconds), next(self._seq), "wake", fut))
        await fut

    def call_at(self, when: float, fn) -> None:
        heapq.heappush(self._heap, (when, next(self._seq), "call", fn))

    async def _settle(self) -> None:
        for _ in range(60):
            await asyncio.sleep(0)

    def advance(self) -> bool:
        """Move time to the next thing scheduled and do it; False when nothing is scheduled."""
        if not self._heap:
            return False
        when, _, kind, payload = heapq.heappop(self._heap)
        self._fire(when, kind, payload)
        return True

    def _fire(self, when: float, kind: str, payload) -> None:
        self.t = max(self.t, when)
        if kind == "wake":
            if not payload.done():
                payload.set_result(None)
        else:
            payload()

    async def run(self, coro, *, limit: float = 10_000.0, on_time=None):
        """Drive `coro` to completion in virtual time. on_time(t) is called as time passes (kill tests)."""
        task = asyncio.ensure_future(coro)
        while True:
            await self._settle()
            if task.done():
                return task.result()
            if not self._heap:
                task.cancel()
                raise Deadlock("nothing scheduled and the task is blocked")
            when, _, kind, payload = heapq.heappop(self._heap)
            if when > limit:
                task.cancel()
                raise Deadlock(f"virtual time limit {limit}s reached")
            self._fire(when, kind, payload)
            if on_time is not None and on_time(self.t, task):
                await self._settle()
                return task


@dataclass
class Version:
    behaviour: str = "ok"  # ok | unhealthy | crash | slow
    start_delay: float = 0.0
    digest: str = ""


@dataclass
class Service:
    id: str
    tag: str
    started: float
    version: Version
    draining: bool = False
    served: int = 0
    in_flight: int = 0
    stopping: bool = False
    last_request: float | None = None
    checkers: dict = field(default_factory=dict)  # source -> [ok, fail, last_t]

    def healthy(self, t: float) -> bool:
        if self.stopping or self.draining or self.version.behaviour == "unhealthy":
            return False
        return t - self.started >= self.version.start_delay


@dataclass
class Container:
    image_ref: str
    tag: str
    state: str
    service: Service | None
    restart_count: int = 0
    exit_code: int | None = None


class World:
    def __init__(self, clock: FakeClock, names=("app-1", "app-2", "app-3"), *, interval=3.0, timeout=3.0,
                 unhealthy=2, healthy=3, start_tag="sha-aaaaaaa", pull_s=1.0, stop_s=0.5, start_s=0.5,
                 rate_hz=20.0):
        self.clock = clock
        self.settings = LBSettings(interval=interval, timeout=timeout, unhealthy_threshold=unhealthy,
                                   healthy_threshold=healthy)
        self.registry: dict[str, Version] = {start_tag: Version(digest="sha256:" + "a" * 64)}
        self.pull_s, self.stop_s, self.start_s = pull_s, stop_s, start_s
        self.failed = 0
        self.ok = 0
        self.log: list[tuple[float, str, str]] = []  # (t, host, op)
        self.lb_frozen: set[str] = set()  # hosts whose LB state no longer changes (a stuck LB)
        self.skip_checks: set[str] = set()  # hosts the LB does not check for now (a late check)
        self.lb_health_calls: list[float] = []
        self._ids = itertools.count(1)
        self.hosts = {n: FakeHost(self, n, f"10.0.0.{i + 1}") for i, n in enumerate(names)}
        self.lb_state = dict.fromkeys(names, True)
        self.lb_counts = {n: [0, 0] for n in names}  # ok, fail streaks as the LB sees them
        for h in self.hosts.values():
            h.container = self._container(ref(start_tag), start_tag, started=-100.0)
        self._rr = itertools.cycle(list(names))
        self._period = 1.0 / rate_hz
        clock.call_at(0.1, self._check_all)
        clock.call_at(0.0, self._traffic)

    def add_version(self, tag: str, behaviour: str = "ok", start_delay: float = 0.0) -> None:
        self.registry[tag] = Version(behaviour, start_delay, "sha256:" + (tag[-1] * 64))

    def _container(self, image_ref: str, tag: str, started: float) -> Container:
        v = self.registry[tag]
        if v.behaviour == "crash":
            return Container(image_ref, tag, "restarting", None, restart_count=1, exit_code=3)
        svc = Service(id=f"p{next(self._ids)}", tag=tag, started=started, version=v)
        return Container(image_ref, tag, "running", svc)

    def _check_all(self) -> None:
        t = self.clock.now()
        s = self.settings
        for name, h in self.hosts.items():
            if name in self.skip_checks:
                continue
            svc = h.container.service if h.container else None
            ok = svc is not None and svc.healthy(t)
            if svc is not None:  # the service counts the check it answered
                c = svc.checkers.setdefault("10.1.0.1", [0, 0, t])
                c[0], c[1] = (c[0] + 1, 0) if ok else (0, c[1] + 1)
                c[2] = t
            if name in self.lb_frozen:
                continue
            lc = self.lb_counts[name]
            lc[0], lc[1] = (lc[0] + 1, 0) if ok else (0, lc[1] + 1)
            if self.lb_state[name] and lc[1] >= s.unhealthy_threshold:
                self.lb_state[name] = False
                self.log.append((t, name, "lb-out"))
            elif not self.lb_state[name] and lc[0] >= s.healthy_threshold:
                self.lb_state[name] = True
                self.log.append((t, name, "lb-in"))
        self.clock.call_at(t + s.interval, self._check_all)

    def _traffic(self) -> None:
        t = self.clock.now()
        rotation = [n for n in self.hosts if self.lb_state[n]]
        if not rotation:
            self.failed += 1
        else:
            while True:
                n = next(self._rr)
                if n in rotation:
                    break
            svc = self.hosts[n].container.service if self.hosts[n].container else None
            if svc is None or svc.stopping or t - svc.started < 0:
                self.failed += 1
                self.log.append((t, n, "request-failed"))
            else:
                svc.served += 1
                svc.last_request = t
                self.ok += 1
        self.clock.call_at(t + self._period, self._traffic)

    def lb_state_at(self, t: float) -> dict[str, bool]:
        state = dict.fromkeys(self.hosts, True)
        for when, n, op in self.log:
            if when > t:
                break
            if op in ("lb-in", "lb-out"):
                state[n] = op == "lb-in"
        return state

    def max_out(self) -> int:
        """The most hosts the LB had out of rotation at once."""
        out, worst = set(), 0
        for _, n, op in self.log:
            if op == "lb-out":
                out.add(n)
            elif op == "lb-in":
                out.discard(n)
            worst = max(worst, len(out))
        return worst

    def tags(self) -> dict[str, str | None]:
        return {n: (h.container.tag if h.container and h.container.state == "running" else None)
                for n, h in self.hosts.items()}

    def ops(self, host: str) -> list[str]:
        return [op for _, n, op in self.log if n == host and not op.startswith(("lb-", "request"))]


class FakeHost:
    def __init__(self, world: World, name: str, address: str):
        self.world = world
        self.name = name
        self.address = address
        self.container: Container | None = None
        self.files: dict[str, str] = {}
        self.fail_state_writes = False

    def _note(self, op: str) -> None:
        self.world.log.append((self.world.clock.now(), self.name, op))

    async def pull(self, image_ref: str) -> ImageInfo:
        self._note("pull")
        await self.world.clock.sleep(self.world.pull_s)
        tag = image_ref.rpartition(":")[2]
        if tag not in self.world.registry:
            raise ImageNotFound(f"manifest for {image_ref} not found")
        return ImageInfo(ref=image_ref, tag=tag, digest=self.world.registry[tag].digest)

    async def inspect(self) -> ContainerInfo | None:
        c = self.container
        if c is None:
            return None
        return ContainerInfo(name="app", image_ref=c.image_ref, tag=c.tag, digest=None, state=c.state,
                             exit_code=c.exit_code, restart_count=c.restart_count)

    async def run(self, image_ref: str, env=None) -> ContainerInfo:
        self._note(f"run {image_ref.rpartition(':')[2]}")
        if self.container is not None and self.container.state == "running":
            raise RuntimeFailure("a container named app is already running")
        await self.world.clock.sleep(self.world.start_s)
        tag = image_ref.rpartition(":")[2]
        self.container = self.world._container(image_ref, tag, started=self.world.clock.now())
        return await self.inspect()

    async def stop(self, grace_seconds: float) -> None:
        self._note("stop")
        if self.container is None:
            return
        if self.container.service:
            self.container.service.stopping = True
        await self.world.clock.sleep(self.world.stop_s)
        self.container = None

    async def logs(self, tail: int = 100) -> list[str]:
        if self.container and self.container.state != "running":
            return ["zdd_service: crashing on start as asked (ZDD_CRASH_ON_START)"]
        return []

    async def stats(self) -> ServiceStats | None:
        svc = self.container.service if self.container else None
        if svc is None or svc.stopping:
            return None
        t = self.world.clock.now()
        return ServiceStats(
            id=svc.id, version=svc.tag, draining=svc.draining, served=svc.served, in_flight=svc.in_flight,
            last_request_age_seconds=None if svc.last_request is None else t - svc.last_request,
            health_checkers=tuple(HealthChecker(src, ok, fail, t - last)
                                  for src, (ok, fail, last) in svc.checkers.items()),
            uptime_seconds=t - svc.started)

    async def drain(self) -> None:
        self._note("drain")
        svc = self.container.service if self.container else None
        if svc is None:
            raise RuntimeFailure("admin port not answering")
        svc.draining = True

    async def undrain(self) -> None:
        self._note("undrain")
        svc = self.container.service if self.container else None
        if svc is None:
            raise RuntimeFailure("admin port not answering")
        svc.draining = False

    async def probe_health(self) -> HealthProbe:
        svc = self.container.service if self.container else None
        if svc is None:
            return HealthProbe(False, None, "connection refused")
        ok = svc.healthy(self.world.clock.now())
        return HealthProbe(ok, 200 if ok else 503, "" if ok else "not ok")

    async def state_read(self, name: str) -> str | None:
        return self.files.get(name)

    async def state_create(self, name: str, content: str) -> bool:
        if name in self.files:
            return False
        self.files[name] = content
        return True

    async def state_write(self, name: str, content: str) -> None:
        self.files[name] = content

    async def state_append(self, name: str, line: str) -> None:
        if self.fail_state_writes:
            raise RuntimeFailure("disk full")
        self.files[name] = self.files.get(name, "") + line + "\n"

    async def state_remove(self, name: str) -> None:
        self.files.pop(name, None)

    async def close(self) -> None:
        pass


class FakeCloud:
    """lb_health lags like DO's monitoring metric: it answers the LB state of `lag` seconds ago."""

    def __init__(self, world: World, *, broken: bool = False, lag: float = 2.5):
        self.world = world
        self.broken = broken
        self.lag = lag
        self.lb = None  # what load_balancer() answers (a Project's status reads it)
        self.api = None  # a FakeCloudAPI that counts the request, when there is one

    async def load_balancer(self):
        if self.api is not None:
            self.api.requests_made += 1
        return self.lb

    async def lb_settings(self) -> LBSettings:
        return self.world.settings

    async def lb_health(self) -> dict[str, bool | None]:
        self.world.lb_health_calls.append(self.world.clock.now())
        if self.broken:
            raise RuntimeError("monitoring API unavailable")
        return self.world.lb_state_at(self.world.clock.now() - self.lag)

    async def tag_exists(self, tag: str) -> bool:
        return tag in self.world.registry


class FakeCloudAPI:
    """Stands in for the DO client a Project reads through: droplets, the LB's per-droplet health
    (the world's LB), registry tags; counts requests like DOClient."""

    def __init__(self, world: World, droplets, tags=()):
        self.world = world
        self.droplets = list(droplets)
        self.tags = list(tags)
        self.requests_made = 0

    @property
    def rate_limit(self):
        from zdd_tui.cloud.models import RateLimit

        return RateLimit(limit=5000, remaining=5000 - self.requests_made, reset_epoch=0)

    async def list_droplets(self, tag=None):
        self.requests_made += max(1, -(-len(self.droplets) // 200))  # one request per page of 200
        return list(self.droplets)

    async def lb_droplet_health(self, lb_id, **_):
        self.requests_made += 1
        return {d.id: self.world.lb_state.get(d.name) for d in self.droplets}

    async def list_tags(self, registry, repository=None):
        self.requests_made += 1
        return list(self.tags)


def fake_project(world: World, config=None, *, droplets=None, lb=None, tags=(), wallclock=None, lag=2.5,
                 cloud_cls=None):
    """A real Project (zdd_tui.project) on the fake world: its hosts as runtimes, FakeCloud (or
    `cloud_cls`) as the cloud, the world's clock as the engine's. The plain FakeHost speaks
    lb-drain only, so a config on the default strategy (local-swap) is set to lb-drain for it."""
    import dataclasses

    from zdd_tui.cloud.models import Droplet
    from zdd_tui.config import Config
    from zdd_tui.project import Project
    from zdd_tui.rollout.interfaces import SwapHost

    config = config or Config()
    if config.deploy.strategy == "local-swap" and not all(isinstance(h, SwapHost) for h in world.hosts.values()):
        config = dataclasses.replace(config, deploy=dataclasses.replace(config.deploy, strategy="lb-drain"))

    if droplets is None:
        droplets = [Droplet(id=i + 1, name=n, status="active", region="nyc3", size="s-1vcpu-1gb",
                            public_ipv4=h.address, private_ipv4=None, tags=())
                    for i, (n, h) in enumerate(world.hosts.items())]
    cloud = (cloud_cls or FakeCloud)(world, lag=lag)
    client = FakeCloudAPI(world, droplets, tags)
    cloud.lb, cloud.api = lb, client
    return Project(config, client=client, cloud=cloud,
                   runtime_factory=lambda d: world.hosts[d.name], clock=world.clock, wallclock=wallclock)
