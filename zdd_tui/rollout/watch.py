"""Traffic during a local-swap rollout: every host's proxy read about once a second
(`SwapHost.traffic`), each reading turned into rates over the interval since the host's previous
one, per host and per version served (`TrafficSampled`).

The watch knows which version each slot runs: once at the start (the proxy's active slot and the
slot containers) and from the strategy at each switch. A host that does not answer gets no rates
for that sample; nothing here ever fails the rollout.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from zdd_tui.rollout.events import HostTraffic, TrafficSampled
from zdd_tui.rollout.interfaces import HostRuntime, SwapHost
from zdd_tui.traffic import Counters, ProxyCounters, combine, delta, rates

if TYPE_CHECKING:
    from zdd_tui.rollout.engine import Engine


@dataclass(frozen=True)
class Reading:
    at: float
    counters: ProxyCounters


class Watch:
    def __init__(self, engine: Engine, runtimes: Mapping[str, HostRuntime]):
        self.e = engine
        self.hosts = {n: rt for n, rt in sorted(runtimes.items()) if isinstance(rt, SwapHost)}
        self.tags: dict[str, dict[str, str]] = {n: {} for n in self.hosts}  # host -> slot -> tag
        self.active: dict[str, str | None] = dict.fromkeys(self.hosts)  # host -> slot the proxy serves
        self.latest: dict[str, Reading] = {}  # host -> its last good reading
        self.failed_requests = 0  # 5xx counted by the proxies since the watch started
        self._sampled = False
        self._lock = asyncio.Lock()
        self._task: asyncio.Task | None = None

    # ---- what each slot runs ----------------------------------------------------------------
    async def learn(self) -> None:
        """Slot -> tag and the active slot of every host, once (a host that does not answer
        stays unknown: its traffic is still counted, under its slot's name)."""
        async def one(name: str, rt: SwapHost) -> None:
            try:
                st = await rt.proxy()
                containers = await rt.slot_containers()
            except Exception:  # noqa: BLE001 - advisory
                return
            self.active[name] = st.active_slot if st.installed else None
            # Oldest first, so the running (or newest) container of a slot wins.
            for c in sorted(containers, key=lambda c: (c.state == "running", c.stopped_at or 0.0)):
                if c.slot:
                    self.tags[name][c.slot] = c.tag

        await asyncio.gather(*(one(n, rt) for n, rt in self.hosts.items()))

    def switched(self, host: str, slot: str, tag: str | None) -> None:
        """The strategy moved the host's proxy to `slot`, which runs `tag`."""
        if host not in self.hosts:
            return
        self.active[host] = slot
        if tag:
            self.tags[host][slot] = tag

    # ---- sampling -----------------------------------------------------------------------------
    def start(self) -> None:
        self._task = asyncio.ensure_future(self._loop())

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def _loop(self) -> None:
        await self.learn()
        while True:
            await self.sample()
            await self.e.clock.sleep(self.e.opt.traffic_seconds)

    async def sample(self) -> None:
        """Read every host now, emit the rates since each one's previous reading (nothing on the
        very first reading: there is no interval yet)."""
        async with self._lock:
            async def read(rt: SwapHost) -> ProxyCounters | None:
                try:
                    return await asyncio.wait_for(rt.traffic(), 10.0)
                except Exception:  # noqa: BLE001 - no reading this time
                    return None

            names = list(self.hosts)
            got = await asyncio.gather(*(read(self.hosts[n]) for n in names))
            now = self.e.clock.now()
            out: list[HostTraffic] = []
            first, self._sampled = not self._sampled, True
            for name, counters in zip(names, got, strict=True):
                prev = self.latest.get(name)
                if counters is None:
                    out.append(HostTraffic(host=name, rates=None))
                    continue
                self.latest[name] = Reading(now, counters)
                if prev is None:
                    out.append(HostTraffic(host=name, rates=None))
                    continue
                out.append(self._host(name, prev, counters, now - prev.at))
            if first:
                return
            self.failed_requests += sum(h.rates.errors for h in out if h.rates is not None)
            await self.e.emit(TrafficSampled(hosts=tuple(out)))

    def _host(self, name: str, prev: Reading, now: ProxyCounters, seconds: float) -> HostTraffic:
        per_slot = {slot: delta(c, prev.counters.slots.get(slot)) for slot, c in now.slots.items()}
        known = [n for n in now.in_flight.values() if n is not None]
        in_flight = sum(known) if known else None
        by_tag: dict[str, list[Counters]] = {}
        for slot, c in sorted(per_slot.items()):
            if c.requests:
                by_tag.setdefault(self.tags[name].get(slot) or f"slot {slot}", []).append(c)
        return HostTraffic(host=name, rates=rates(combine(per_slot.values()), seconds, in_flight),
                           by_tag=tuple((tag, rates(combine(cs), seconds)) for tag, cs in by_tag.items()))

    def served(self, host: str, since: Reading | None) -> Counters | None:
        """What the host's active slot served from `since` to its latest reading (None: unknown)."""
        slot = self.active.get(host)
        last = self.latest.get(host)
        if since is None or last is None or slot is None:
            return None
        new = last.counters.slots.get(slot)
        if new is None:
            return Counters()
        return delta(new, since.counters.slots.get(slot))
