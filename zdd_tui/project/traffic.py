"""Each host's traffic over the last minutes, as its proxy counted it (local-swap hosts).

Outside a rollout the console samples the hosts itself (`TrafficSampler.sample`, about once a
second): it reads each proxy's cumulative counters through the project's host runtimes (the
existing connections: no cloud API request) and keeps, per host, the rates between two readings
(`TrafficHistory`). During a rollout the engine samples them and says so in `TrafficSampled`
events; `TrafficSampler.record` keeps those in the same history, so the pictures go on.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from zdd_tui.rollout.events import TrafficSampled
from zdd_tui.traffic import ProxyCounters, Rates, combine, delta, rates

if TYPE_CHECKING:
    from zdd_tui.cloud.models import Droplet
    from zdd_tui.project.open import Project

HISTORY_SECONDS = 300.0  # what the dashboard's sparklines span
# A large fleet is read a slice at a time (round robin): at most this many proxies a sample, so
# 200 hosts are each read every ~8 s, and their rates cover the time since their last reading.
HOSTS_PER_SAMPLE = 24
CONCURRENCY = 8
READ_TIMEOUT = 1.0  # a proxy that does not answer in time counts as "no reading" this time


@dataclass(frozen=True)
class Point:
    """One reading of one host: its traffic over the `rates.seconds` before `at` (engine clock);
    `rates` None: no reading (no proxy, or it did not answer)."""

    at: float
    rates: Rates | None


class TrafficHistory:
    """Per host, its readings over the last `keep_seconds` (bounded in time and in count)."""

    def __init__(self, keep_seconds: float = HISTORY_SECONDS, max_points: int = 1200):
        self.keep_seconds = keep_seconds
        self.max_points = max_points
        self._points: dict[str, deque[Point]] = {}
        self.version = 0  # bumped on every change: a painter skips an unchanged history

    def add(self, host: str, at: float, r: Rates | None) -> None:
        points = self._points.get(host)
        if points is None:
            points = self._points[host] = deque(maxlen=self.max_points)
        points.append(Point(at, r))
        while points and points[0].at < at - self.keep_seconds:
            points.popleft()
        self.version += 1

    def hosts(self) -> list[str]:
        return sorted(self._points)

    def points(self, host: str) -> tuple[Point, ...]:
        return tuple(self._points.get(host, ()))

    def latest(self, host: str) -> Point | None:
        points = self._points.get(host)
        return points[-1] if points else None

    def series(self, hosts: Iterable[str], now: float, buckets: int = 60,
               span: float | None = None) -> tuple[list[float], list[float]]:
        """Requests per second and 5xx per second of `hosts` together, in `buckets` equal steps
        over the `span` seconds before `now`. A reading covers the window since the one before
        (a slice of a large fleet is read every few seconds): it is spread over the steps that
        window overlaps, so irregular readings still make an even time axis. A step no reading
        covers counts 0."""
        span = span or self.keep_seconds
        width = span / buckets
        start = now - span
        req = [0.0] * buckets
        err = [0.0] * buckets
        for host in hosts:
            for p in self._points.get(host, ()):
                r = p.rates
                if r is None or r.seconds <= 0 or p.at <= start:
                    continue
                a, b = p.at - r.seconds, p.at
                first = max(0, int((a - start) // width))
                last = min(buckets - 1, int((b - start) // width))
                for i in range(first, last + 1):
                    lo, hi = start + i * width, start + (i + 1) * width
                    share = (min(b, hi) - max(a, lo)) / r.seconds
                    if share > 0:
                        req[i] += r.requests * share
                        err[i] += r.errors * share
        return [n / width for n in req], [n / width for n in err]

    def totals(self, host: str, now: float, span: float | None = None) -> tuple[int, int]:
        """(requests, 5xx) of the readings that ended within the `span` seconds before `now`."""
        since = now - (span or self.keep_seconds)
        requests = errors = 0
        for p in self._points.get(host, ()):
            if p.rates is not None and p.at > since:
                requests += p.rates.requests
                errors += p.rates.errors
        return requests, errors


class TrafficSampler:
    """Reads the proxies of a fleet through `project`'s runtimes into `history`."""

    def __init__(self, project: Project, history: TrafficHistory | None = None, *,
                 per_sample: int = HOSTS_PER_SAMPLE, timeout: float = READ_TIMEOUT):
        self.project = project
        self.history = history or TrafficHistory()
        self.per_sample = per_sample
        self.timeout = timeout
        self._last: dict[str, tuple[float, ProxyCounters]] = {}  # host -> its previous reading
        self._cursor = 0
        self.reads = 0  # proxies read so far

    async def sample(self, droplets: list[Droplet]) -> TrafficHistory:
        """Read the next slice of the fleet (at most `per_sample` hosts, round robin)."""
        if not droplets:
            return self.history
        fleet = sorted(droplets, key=lambda d: d.name)
        n = min(self.per_sample, len(fleet))
        start = self._cursor % len(fleet)
        chosen = [fleet[(start + i) % len(fleet)] for i in range(n)]
        self._cursor = start + n
        sem = asyncio.Semaphore(CONCURRENCY)

        async def one(d: Droplet) -> None:
            async with sem:
                counters = await self._read(d)
                self.take(d.name, self.project.clock.now(), counters)

        await asyncio.gather(*(one(d) for d in chosen))
        return self.history

    async def _read(self, droplet: Droplet) -> ProxyCounters | None:
        self.reads += 1
        try:
            reader: Any = getattr(self.project.runtime(droplet), "traffic", None)
            if reader is None:  # a runtime with no proxy side
                return None
            return await asyncio.wait_for(reader(), self.timeout)
        except Exception:  # noqa: BLE001 - one silent proxy is "no reading", the others go on
            return None

    def take(self, host: str, at: float, counters: ProxyCounters | None) -> Rates | None:
        """One reading of `host` at `at`: the rates since its previous reading go into the
        history (the first reading only starts the count; None is a gap)."""
        if counters is None:
            self._last.pop(host, None)
            self.history.add(host, at, None)
            return None
        previous = self._last.get(host)
        self._last[host] = (at, counters)
        if previous is None or at <= previous[0]:
            return None
        before = previous[1].slots
        window = combine(delta(c, before.get(slot)) for slot, c in counters.slots.items())
        known = [n for n in counters.in_flight.values() if n is not None]
        r = rates(window, at - previous[0], sum(known) if known else None)
        self.history.add(host, at, r)
        return r

    def record(self, event: TrafficSampled) -> None:
        """The engine's readings during a rollout, into the same history. Its own counts start
        again afterwards from a fresh reading (the one from before would span the rollout)."""
        at = event.at or self.project.clock.now()
        for h in event.hosts:
            self.history.add(h.host, at, h.rates)
            self._last.pop(h.host, None)
