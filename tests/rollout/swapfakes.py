"""local-swap in virtual time: the engine tests' world (fakes.py: fake clock, an LB with DO's
threshold semantics, steady traffic counting every failed request) with hosts that run a proxy in
front of two slots. The LB checks and sends traffic through each host's proxy to its active slot,
so a switch, a drain of the old slot and an adoption are all seen by the same LB and traffic.

A host with no proxy runs the single container of lb-drain (with the admin contract, or without
it: `admin=False`) until the engine adopts it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from zdd_tui.rollout.interfaces import ContainerInfo, HealthProbe, ProxyStatus, RuntimeFailure, ServiceStats
from zdd_tui.traffic import INF, Counters, ProxyCounters

from .fakes import Container, FakeClock, FakeCloud, FakeHost, World, ref

SLOT_PORTS = {"a": 8081, "b": 8082}
BOUNDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, INF)  # Traefik's default buckets


@dataclass(frozen=True)
class Load:
    """What a slot serves per second of virtual time: requests, the share answered 5xx, and how long
    each takes (all in one histogram bucket)."""

    rps: float = 10.0
    error_share: float = 0.0
    latency: float = 0.01


# host, slot, tag -> the slot's load while the proxy sends it traffic
Source = Callable[[str, str, str], Load]


@dataclass
class Meter:
    """One slot's cumulative counters, kept as floats so fractional rates add up exactly."""

    requests: float = 0.0
    errors: float = 0.0
    by_bound: dict[float, float] = field(default_factory=dict)
    duration: float = 0.0

    def counters(self) -> Counters:
        buckets, total = [], 0
        for le in BOUNDS:
            total += int(self.by_bound.get(le, 0.0))
            buckets.append((le, total))
        n = int(self.requests)
        buckets[-1] = (INF, max(n, buckets[-1][1]))
        return Counters(n, int(self.errors), tuple(buckets), self.duration)


@dataclass
class Slot:
    name: str
    slot: str
    c: Container
    stopped_at: float | None = None


class FakeSwapHost(FakeHost):
    """A FakeHost whose `container` (what the LB and the traffic reach) is the proxy's active slot."""

    def __init__(self, world: World, name: str, address: str):
        self._single: Container | None = None
        super().__init__(world, name, address)
        self.installed = False
        self.running = True
        self.healthy = True
        self.active: str | None = None
        self.slots: list[Slot] = []
        self.inflight: dict[str, int] = {}
        self.admin = True  # the single container answers the admin contract
        self.fail_switch = False
        self.fail_install = False  # the proxy will not start (e.g. its image cannot be pulled)
        self.switch_calls = 0
        # The proxy's counters: the active slot serves `source(host, slot, tag)` per second.
        self.source: Source = lambda host, slot, tag: Load()
        self.meters: dict[str, Meter] = {}
        self._metered_at = world.clock.now()
        self.traffic_fails = False  # traffic() raises (the host does not answer)

    # -- what the LB and the traffic reach ------------------------------------------------------
    @property  # type: ignore[override]
    def container(self) -> Container | None:
        if not self.installed:
            return self._single
        if not self.running:
            return None
        s = self._running(self.active)
        return s.c if s is not None else None

    @container.setter
    def container(self, value: Container | None) -> None:
        self._single = value

    def _running(self, slot: str | None) -> Slot | None:
        return next((s for s in self.slots if s.slot == slot and s.c.state == "running"), None)

    def _live(self, slot: str | None) -> Slot | None:
        return next((s for s in self.slots if s.slot == slot and s.stopped_at is None), None)

    # -- the lb-drain part, before adoption -------------------------------------------------------
    async def stats(self) -> ServiceStats | None:
        if self.installed or not self.admin:
            return None  # local-swap apps have no admin port
        return await super().stats()

    async def logs(self, tail: int = 100) -> list[str]:
        newest = self.slots[-1] if self.slots else None
        if newest is not None and newest.c.state != "running":
            return ["app: crashing on start: missing DATABASE_URL"]
        if newest is not None and newest.c.service is not None and newest.c.service.version.behaviour == "unhealthy":
            return ["app: listening", "app: health check failing: cache not warm"]
        return await super().logs(tail)

    # -- SwapHost --------------------------------------------------------------------------------
    async def proxy(self) -> ProxyStatus:
        if not self.installed:
            return ProxyStatus(installed=False, running=False, healthy=False, active_slot=None, detail="no proxy")
        return ProxyStatus(installed=True, running=self.running, healthy=self.running and self.healthy,
                           active_slot=self.active if self.running else None,
                           detail="" if self.running and self.healthy else "ping: connection refused")

    async def install_proxy(self, slot: str | None) -> ProxyStatus:
        self._note("install_proxy")
        if self.fail_install:
            raise RuntimeFailure(f"the proxy did not start on {self.name}")
        if self._single is not None and self._single.state == "running":
            raise RuntimeFailure(f"port 8080 is held by another process on {self.name}")
        self.installed, self.running, self.healthy, self.active = True, True, True, slot
        return await self.proxy()

    async def slot_containers(self) -> list[ContainerInfo]:
        return [ContainerInfo(name=s.name, image_ref=s.c.image_ref, tag=s.c.tag, digest=None, state=s.c.state,
                              restart_count=s.c.restart_count, exit_code=s.c.exit_code, slot=s.slot,
                              port=SLOT_PORTS[s.slot], stopped_at=s.stopped_at)
                for s in self.slots]

    async def run_slot(self, slot: str, image_ref: str, env=None) -> ContainerInfo:
        tag = image_ref.rpartition(":")[2]
        self._note(f"run_slot {slot} {tag}")
        if self._live(slot) is not None:
            raise RuntimeFailure(f"slot {slot} already runs a container")
        await self.world.clock.sleep(self.world.start_s)
        name = f"app-{slot}-{tag}"
        self.slots = [s for s in self.slots if s.name != name]
        self.slots.append(Slot(name, slot, self.world._container(image_ref, tag, started=self.world.clock.now())))
        return next(c for c in await self.slot_containers() if c.name == name)

    async def probe_slot(self, slot: str) -> HealthProbe:
        s = self._running(slot)
        if s is None or s.c.service is None:
            return HealthProbe(False, None, "connection refused")
        ok = s.c.service.healthy(self.world.clock.now())
        return HealthProbe(ok, 200 if ok else 503, "" if ok else "not ok")

    async def switch(self, slot: str) -> None:
        self._note(f"switch {slot}")
        self.switch_calls += 1
        if self.fail_switch:
            self.fail_switch = False  # once: switching back works
            raise RuntimeFailure(f"the proxy still reports slot {self.active} after 10s")
        self.meter()
        self.active = slot

    async def in_flight(self, slot: str) -> int | None:
        self._note(f"in_flight {slot}")
        return self.inflight.get(slot, 0)

    async def stop_slot(self, slot: str, grace_seconds: float) -> None:
        self._note(f"stop_slot {slot}")
        s = self._live(slot)
        if s is None:
            return
        if s.c.service is not None:
            s.c.service.stopping = True
        await self.world.clock.sleep(self.world.stop_s)
        s.c.state = "exited"
        s.stopped_at = self.world.clock.now()

    async def remove_container(self, name: str) -> None:
        self._note(f"remove {name}")
        self.slots = [s for s in self.slots if s.name != name]

    def meter(self) -> None:
        """Count what the active slot served since the last call."""
        now = self.world.clock.now()
        dt, self._metered_at = now - self._metered_at, now
        s = self._running(self.active) if self.installed and self.running else None
        if s is None or dt <= 0:
            return
        load = self.source(self.name, s.slot, s.c.tag)
        n = load.rps * dt
        m = self.meters.setdefault(s.slot, Meter())
        m.requests += n
        m.errors += n * load.error_share
        le = next(b for b in BOUNDS if load.latency <= b)
        m.by_bound[le] = m.by_bound.get(le, 0.0) + n
        m.duration += n * load.latency

    async def traffic(self) -> ProxyCounters | None:
        if self.traffic_fails:
            raise RuntimeFailure(f"ssh: connection to {self.name} lost")
        if not self.installed or not self.running:
            return None
        self.meter()
        return ProxyCounters(slots={k: m.counters() for k, m in self.meters.items() if int(m.requests) > 0},
                             in_flight={k: self.inflight.get(k, 0) for k in SLOT_PORTS})

    async def prune(self, keep: int) -> list[str]:
        self._note("prune")
        stopped = sorted((s for s in self.slots if s.stopped_at is not None), key=lambda s: -(s.stopped_at or 0))
        gone = [s.name for s in stopped[keep:]]
        self.slots = [s for s in self.slots if s.name not in gone]
        return gone


class FakeSwapCloud(FakeCloud):
    """Adds taking a droplet out of the LB and back through the API (adoption by detach)."""

    async def lb_detach(self, host: str) -> None:
        w = self.world
        w.log.append((w.clock.now(), host, "lb_detach"))
        w.lb_frozen.add(host)
        if w.lb_state[host]:
            w.lb_state[host] = False
            w.log.append((w.clock.now(), host, "lb-out"))

    async def lb_attach(self, host: str) -> None:
        w = self.world
        w.log.append((w.clock.now(), host, "lb_attach"))
        w.lb_frozen.discard(host)
        w.lb_counts[host] = [0, 0]  # the LB checks it from scratch


def swap_world(clock: FakeClock, names=("app-1", "app-2", "app-3"), *, proxies=True, **kw) -> World:
    """The fakes' World with FakeSwapHosts; with `proxies`, each runs the start tag on slot a behind
    its proxy, else the single container of lb-drain."""
    world = World(clock, names=names, **kw)
    start = next(iter(world.registry))
    for name, old in list(world.hosts.items()):
        h = FakeSwapHost(world, name, old.address)
        if proxies:
            h.installed, h.active = True, "a"
            h.slots.append(Slot(f"app-a-{start}", "a", old.container))
        else:
            h.container = old.container
        world.hosts[name] = h
    return world


__all__ = ["FakeSwapCloud", "FakeSwapHost", "Load", "Slot", "ref", "swap_world"]
