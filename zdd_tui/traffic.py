"""Traffic as the proxy on a host counts it (local-swap): per slot, requests, 5xx answers and a
latency histogram since the proxy started. Pure data and arithmetic, no I/O.

A runtime reads the counters (`SwapHost.traffic`); whoever samples them keeps two readings and
turns their difference into rates (`rates(delta(new, old), seconds)`). Counters are cumulative,
so nothing is lost between samples however late one comes; a proxy that restarted starts from
zero again, which `delta` recognises.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

INF = math.inf


@dataclass(frozen=True)
class Counters:
    """One slot's counters since the proxy started (or their difference over a window)."""

    requests: int = 0
    errors: int = 0  # answers with a 5xx status (the app's, or the proxy's own 502/503/504)
    # Cumulative histogram of request durations: (upper bound in seconds, requests at most that
    # long), ascending, the last bound +Inf (its count equals `requests`).
    buckets: tuple[tuple[float, int], ...] = ()
    duration_sum: float = 0.0  # seconds, all requests


@dataclass(frozen=True)
class ProxyCounters:
    """What one host's proxy reported at one moment."""

    slots: Mapping[str, Counters] = field(default_factory=dict)  # slot -> counters (absent: no request yet)
    in_flight: Mapping[str, int | None] = field(default_factory=dict)  # slot -> requests in flight now


@dataclass(frozen=True)
class Rates:
    """Traffic over a window: what the console plots and the canary compares."""

    seconds: float
    requests: int = 0
    errors: int = 0
    p50: float | None = None  # seconds; None: no request in the window
    p95: float | None = None
    in_flight: int | None = None  # at the window's end; None: unknown

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    @property
    def error_share(self) -> float | None:
        """5xx answers per request (None: no request)."""
        return self.errors / self.requests if self.requests else None

    def to_dict(self) -> dict[str, float | int | None]:
        """Its JSON form, the derived numbers included."""
        return {"seconds": self.seconds, "requests": self.requests, "errors": self.errors,
                "rps": self.rps, "error_share": self.error_share, "p50": self.p50, "p95": self.p95,
                "in_flight": self.in_flight}


def parse_metrics(text: str) -> dict[str, Counters]:
    """The proxy's Prometheus text (Traefik's `traefik_service_*` families, services `slot-<s>@file`)
    summed over status code, method and protocol: slot -> counters. Other services and families are
    ignored; a malformed exposition raises ValueError."""
    raise NotImplementedError


def delta(new: Counters, old: Counters | None) -> Counters:
    """What happened between two readings. A reading lower than the one before means the proxy
    restarted (counters from zero): the new reading is then all that is known."""
    if old is None or new.requests < old.requests or new.errors < old.errors:
        return new
    old_counts = dict(old.buckets)
    return Counters(
        requests=new.requests - old.requests,
        errors=new.errors - old.errors,
        buckets=tuple((le, max(0, n - old_counts.get(le, 0))) for le, n in new.buckets),
        duration_sum=max(0.0, new.duration_sum - old.duration_sum),
    )


def combine(parts: Iterable[Counters]) -> Counters:
    """Several slots' or hosts' counters as one (histograms added bound by bound)."""
    requests = errors = 0
    total = 0.0
    buckets: dict[float, int] = {}
    for c in parts:
        requests += c.requests
        errors += c.errors
        total += c.duration_sum
        for le, n in c.buckets:
            buckets[le] = buckets.get(le, 0) + n
    return Counters(requests, errors, tuple(sorted(buckets.items())), total)


def quantile(q: float, buckets: tuple[tuple[float, int], ...]) -> float | None:
    """The q-quantile (0..1) of a cumulative histogram, interpolated linearly inside the bucket it
    falls in (as Prometheus' histogram_quantile does); in the +Inf bucket, the highest finite
    bound. None when the histogram is empty."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower_bound, lower_count = 0.0, 0
    for le, n in buckets:
        if n >= rank:
            if le == INF:
                return lower_bound
            if n == lower_count:
                return le
            return lower_bound + (le - lower_bound) * (rank - lower_count) / (n - lower_count)
        lower_bound, lower_count = le, n
    return lower_bound


def rates(c: Counters, seconds: float, in_flight: int | None = None) -> Rates:
    return Rates(seconds=seconds, requests=c.requests, errors=c.errors,
                 p50=quantile(0.50, c.buckets), p95=quantile(0.95, c.buckets), in_flight=in_flight)
