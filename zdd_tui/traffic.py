"""Traffic as the proxy on a host counts it (local-swap): per slot, requests, 5xx answers and a
latency histogram since the proxy started. Pure data and arithmetic, no I/O.

A runtime reads the counters (`SwapHost.traffic`); whoever samples them keeps two readings and
turns their difference into rates (`rates(delta(new, old), seconds)`). Counters are cumulative,
so nothing is lost between samples however late one comes; a proxy that restarted starts from
zero again, which `delta` recognises.

Histograms need not share their bounds: a proxy keeps the buckets of the static configuration it
was started with, so a fleet may mix proxies installed by different zdd-tui versions. Where they
are added (`combine`) or compared (`common_bounds`), only the bounds they all have are used: a
cumulative count is exact at its own bounds, so the sum there is exact too.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from itertools import pairwise

from prometheus_client.parser import text_string_to_metric_families

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


# The families read, as sample names (the counter's and the histogram's; `_count` repeats the
# +Inf bucket and is skipped), and the services that are the slots.
REQUESTS = "traefik_service_requests_total"
DURATION = "traefik_service_request_duration_seconds"
_KEEP = (f"{REQUESTS}{{", f"{DURATION}_bucket{{", f"{DURATION}_sum{{",
         f"# TYPE {REQUESTS} ", f"# TYPE {DURATION} ")
_SERVICE = re.compile(r"slot-([A-Za-z0-9_-]+)@file")
_ERROR_CODE = re.compile(r"5\d\d")
# Bounds on untrusted text: a whole exposition (Traefik's, two slots, is ~30 KB) and one line of
# the families read (~150 characters): the parser's work on a line grows with the square of its
# quotes, so a hostile body must not be able to make one long one.
MAX_TEXT = 1 << 20
MAX_LINE = 512

# What a series (a sample line up to its value: name and labels) adds to: (slot, "requests" |
# "errors" | "bucket" | "sum", bucket bound) each; none when it is not a slot's. The parser works
# per character in pure Python (~70 us a line); a proxy prints the same few dozen series every
# time, so each is parsed once and afterwards only its value is read. Bounded: emptied when full.
Series = tuple[str, str, float]
_series: dict[str, tuple[Series, ...]] = {}
MAX_SERIES = 8192
MAX_COUNT = 2.0**53  # counts are whole numbers a float holds exactly


def parse_metrics(text: str) -> dict[str, Counters]:
    """The proxy's Prometheus text (Traefik's `traefik_service_*` families, services `slot-<s>@file`)
    summed over status code, method and protocol: slot -> counters. Other services and families are
    ignored; a malformed exposition raises ValueError."""
    if len(text) > MAX_TEXT:
        raise ValueError(f"a metrics text of {len(text)} characters (at most {MAX_TEXT} read)")
    head = text.lstrip()[:1]
    if head and not (head == "#" or head.isalpha() or head in "_:"):
        raise ValueError("not a Prometheus text exposition")
    # Only the lines of the two families are read (most of an exposition is the Go runtime's and
    # other families'), and of those only the slots' samples.
    kept: list[str] = []
    for line in text.splitlines():
        if not line.startswith(_KEEP) or (line[0] != "#" and "slot-" not in line):
            continue
        if len(line) > MAX_LINE:
            raise ValueError(f"a metrics line of {len(line)} characters (at most {MAX_LINE})")
        kept.append(line)
    totals: dict[Series, float] = {}
    new = False
    for line in kept:
        if line[0] == "#":
            continue
        end = line.rfind("}") + 1
        meaning = _series.get(line[:end]) if end else None
        if meaning is None:
            new = True
            continue
        value = _value(line[end:])
        for series in meaning:
            totals[series] = totals.get(series, 0.0) + value
    if new:
        _parse_new(kept, totals)
    return _counters(totals)


def _value(tail: str) -> float:
    """A sample's value from what follows its series (a number, perhaps a timestamp)."""
    words = tail.split()
    if not 1 <= len(words) <= 2 or "_" in words[0]:
        raise ValueError(f"not a sample value: {tail[:40]!r}")
    value = float(words[0])
    if not 0 <= value < MAX_COUNT:
        raise ValueError(f"a sample value of {value}")
    return value


def _parse_new(kept: list[str], totals: dict[Series, float]) -> None:
    """The lines of series not seen before through prometheus_client's parser (with their
    families' # TYPE lines), remembered for the next time."""
    lines = [ln for ln in kept if ln[0] == "#" or _series.get(ln[:ln.rfind("}") + 1]) is None]
    sample_lines = [ln for ln in lines if ln[0] != "#"]
    try:
        samples = [s for family in text_string_to_metric_families("\n".join(lines)) for s in family.samples]
    except (KeyError, IndexError, TypeError) as exc:  # the parser's own, on some malformed lines
        raise ValueError(f"malformed metrics text ({type(exc).__name__})") from None
    if len(samples) != len(sample_lines):
        raise ValueError("malformed metrics text (its lines and samples do not match)")
    for line, sample in zip(sample_lines, samples, strict=True):
        meaning = _meaning(sample.name, sample.labels)
        end = line.rfind("}") + 1
        value = _value(line[end:])  # the parser's too, with the same checks as a known series'
        for series in meaning:
            totals[series] = totals.get(series, 0.0) + value
        if len(_series) >= MAX_SERIES:
            _series.clear()
        _series[line[:end]] = meaning


def _meaning(name: str, labels: Mapping[str, str]) -> tuple[Series, ...]:
    m = _SERVICE.fullmatch(labels.get("service", ""))
    if m is None:
        return ()
    slot = m.group(1)
    if name == REQUESTS:
        if _ERROR_CODE.fullmatch(labels.get("code", "")):
            return ((slot, "requests", 0.0), (slot, "errors", 0.0))
        return ((slot, "requests", 0.0),)
    if name == f"{DURATION}_bucket":
        if "le" not in labels:
            raise ValueError("a histogram bucket without its bound (le)")
        le = float(labels["le"])
        if math.isnan(le):
            raise ValueError("a histogram bucket bound that is not a number")
        return ((slot, "bucket", le),)
    if name == f"{DURATION}_sum":
        return ((slot, "sum", 0.0),)
    return ()


def _counters(totals: dict[Series, float]) -> dict[str, Counters]:
    slots: dict[str, dict[str, float]] = {}
    buckets: dict[str, list[tuple[float, int]]] = {}
    for (slot, what, le), value in totals.items():
        if what == "bucket":
            buckets.setdefault(slot, []).append((le, round(value)))
        else:
            slots.setdefault(slot, {})[what] = value
    out: dict[str, Counters] = {}
    for slot in sorted(slots.keys() | buckets.keys()):
        bs = tuple(sorted(buckets.get(slot, ())))
        if bs and bs[-1][0] != INF:
            raise ValueError(f"slot {slot}: a latency histogram without its +Inf bucket")
        if any(a[1] > b[1] for a, b in pairwise(bs)):
            raise ValueError(f"slot {slot}: a latency histogram that is not cumulative")
        got = slots.get(slot, {})
        out[slot] = Counters(requests=round(got.get("requests", 0.0)), errors=round(got.get("errors", 0.0)),
                             buckets=bs, duration_sum=got.get("sum", 0.0))
    return out


def bounds(buckets: tuple[tuple[float, int], ...]) -> tuple[float, ...]:
    return tuple(le for le, _ in buckets)


def delta(new: Counters, old: Counters | None) -> Counters:
    """What happened between two readings. A reading lower than the one before means the proxy
    restarted (counters from zero): the new reading is then all that is known. Any bucket counts:
    a proxy that restarted and has already served more requests than before shows it there. So do
    other bucket bounds: they come from the proxy's static configuration, which only a restart
    changes."""
    if old is None or new.requests < old.requests or new.errors < old.errors:
        return new
    if old.buckets and new.buckets and bounds(old.buckets) != bounds(new.buckets):
        return new
    old_counts = dict(old.buckets)
    if any(n < old_counts.get(le, 0) for le, n in new.buckets):
        return new
    return Counters(
        requests=new.requests - old.requests,
        errors=new.errors - old.errors,
        buckets=tuple((le, max(0, n - old_counts.get(le, 0))) for le, n in new.buckets),
        duration_sum=max(0.0, new.duration_sum - old.duration_sum),
    )


def common_bounds(*histograms: tuple[tuple[float, int], ...]) -> frozenset[float]:
    """The bounds every non-empty histogram has (an empty one, a slot that has not served yet,
    constrains nothing)."""
    sets = [frozenset(bounds(b)) for b in histograms if b]
    return frozenset.intersection(*sets) if sets else frozenset()


def on_bounds(buckets: tuple[tuple[float, int], ...], keep: frozenset[float]) -> tuple[tuple[float, int], ...]:
    """The histogram at these bounds only (still exact: its counts are cumulative)."""
    return tuple((le, n) for le, n in buckets if le in keep)


def combine(parts: Iterable[Counters]) -> Counters:
    """Several slots' or hosts' counters as one: histograms added bound by bound, on the bounds
    they all have (adding a count at a bound some part lacks would make the sum non-cumulative)."""
    parts = list(parts)
    keep = common_bounds(*(c.buckets for c in parts))
    requests = errors = 0
    total = 0.0
    buckets: dict[float, int] = dict.fromkeys(keep, 0)
    for c in parts:
        requests += c.requests
        errors += c.errors
        total += c.duration_sum
        for le, n in on_bounds(c.buckets, keep):
            buckets[le] += n
    return Counters(requests, errors, tuple(sorted(buckets.items())), total)


def quantile(q: float, buckets: tuple[tuple[float, int], ...]) -> float | None:
    """The q-quantile (0..1) of a cumulative histogram, interpolated linearly inside the bucket it
    falls in (as Prometheus' histogram_quantile does); in the +Inf bucket, the highest finite
    bound. None when the histogram is empty. One histogram, one set of bounds: histograms with
    other bounds go through `combine` first."""
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
