"""Where a rollout's time goes: every host-runtime and cloud call timed, beside the phases.

`python -m tests.bench_rollout --profile ...` wraps the session's runtimes (and its cloud) so that
each awaited call records (host, method, start, end) on the same monotonic clock as the engine's
events, then prints, per host, its phases with the calls made in each, and a summary: the time
between leaving the floor (the switch done) and the next host's start, by call.
"""

from __future__ import annotations

import functools
import inspect
import time
from collections import defaultdict
from dataclasses import dataclass

from zdd_tui.rollout.events import Phase, PhaseChanged


@dataclass
class Call:
    host: str
    method: str
    start: float
    end: float


class Profiler:
    def __init__(self) -> None:
        self.calls: list[Call] = []
        self._wrapped: set[int] = set()

    def wrap(self, obj, host: str) -> None:
        if id(obj) in self._wrapped:
            return
        self._wrapped.add(id(obj))
        for name in dir(type(obj)):
            if name.startswith("_") or name == "close":
                continue
            fn = getattr(obj, name, None)
            if fn is None or not inspect.iscoroutinefunction(fn):
                continue
            setattr(obj, name, self._timed(fn, host, name))

    def _timed(self, fn, host: str, name: str):
        @functools.wraps(fn)
        async def timed(*args, **kw):
            t = time.monotonic()
            try:
                return await fn(*args, **kw)
            finally:
                self.calls.append(Call(host, name, t, time.monotonic()))

        return timed

    def report(self, rec, t0: float, t_end: float, out) -> None:
        marks: list[tuple[str, Phase, float]] = [(e.host, e.phase, e.at) for e in rec.of(PhaseChanged)]
        by_host: dict[str, list[tuple[Phase, float]]] = defaultdict(list)
        for host, phase, at in marks:
            by_host[host].append((phase, at))
        print(f"  profile (ms from the run's start; wall {1000 * (t_end - t0):.0f} ms):", file=out)
        first = min(at for _, _, at in marks) if marks else t0
        print(f"    before the first event: {1000 * (first - t0):.0f} ms; calls: "
              + self._calls_in("*", t0, first, t0), file=out)
        for host, seq in by_host.items():
            print(f"    {host}:", file=out)
            for i, (phase, at) in enumerate(seq):
                nxt = seq[i + 1][1] if i + 1 < len(seq) else at
                print(f"      {1000 * (at - t0):7.0f} {phase.value:<16} {1000 * (nxt - at):6.0f} ms  "
                      + self._calls_in(host, at, nxt, t0), file=out)
        last = max(at for _, _, at in marks) if marks else t_end
        print(f"    after the last event: {1000 * (t_end - last):.0f} ms; calls: "
              + self._calls_in("*", last, t_end, t0), file=out)
        totals: dict[str, list[float]] = defaultdict(list)
        for c in self.calls:
            if t0 <= c.start <= t_end:
                totals[c.method].append(c.end - c.start)
        print("    calls during the run (count, total ms, mean ms): " + ", ".join(
            f"{m} {len(v)}x {1000 * sum(v):.0f}/{1000 * sum(v) / len(v):.0f}"
            for m, v in sorted(totals.items(), key=lambda kv: -sum(kv[1]))), file=out)

    def _calls_in(self, host: str, a: float, b: float, t0: float) -> str:
        seen: dict[str, list[float]] = defaultdict(list)
        for c in self.calls:
            if (host == "*" or c.host == host) and a <= c.start < b:
                seen[c.method if host != "*" else f"{c.host}.{c.method}"].append(c.end - c.start)
        return ", ".join(f"{m} {len(v)}x {1000 * sum(v):.0f}" for m, v in seen.items())
