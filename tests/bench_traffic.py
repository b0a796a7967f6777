"""Traffic benchmark: what reading one proxy's metrics costs, as the sampler does every second.

Run on demand (not part of the test run), from the repository root:

    python -m tests.bench_traffic [--hosts 200] [--rounds 20]

Expositions: the captured one of a real Traefik 3.7.15 (tests/proxy/traefik-3.7.15.metrics: both
slots, a few status codes and methods), and a busier one made from it (6 status codes x 2
methods per slot). For each it prints the time `parse_metrics` takes on a series it has not seen
(the first reading of a host: every line through prometheus_client's parser), on series seen
before (every later reading: values change, series do not), for `--hosts` hosts once each (one
sampling round, each host's values its own), and prometheus_client's parser on the whole text
for comparison. Also `ss`'s output for the in-flight count. Figures only: nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import re
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from zdd_tui import traffic
from zdd_tui.hosts import slots as host_slots

FIXTURE = Path(__file__).parent / "proxy" / "traefik-3.7.15.metrics"


def busier(text: str) -> str:
    """The fixture's service families repeated for more (code, method) pairs per slot."""
    lines = text.splitlines()
    mine = [ln for ln in lines if ln.startswith(("traefik_service_request_duration", "traefik_service_requests_total"))
            and 'code="200",method="GET"' in ln]
    extra = []
    for code in ("200", "201", "204", "304", "404", "500"):
        for method in ("GET", "POST"):
            if (code, method) == ("200", "GET"):
                continue
            extra += [ln.replace('code="200",method="GET"', f'code="{code}",method="{method}"') for ln in mine]
    return "\n".join(lines + extra) + "\n"


def per_host(text: str, i: int) -> str:
    """The same series with values of its own (another host's counts)."""
    return re.sub(r"^(traefik_service_\S+\}) (\d+)$", lambda m: f"{m.group(1)} {int(m.group(2)) * 7 + i}", text,
                  flags=re.M)


def best(fn: Callable[[], object], rounds: int) -> float:
    """Median seconds of one call over `rounds` (each round a few calls, so timer noise is small)."""
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(5):
            fn()
        times.append((time.perf_counter() - t0) / 5)
    return statistics.median(times)


def cold(text: str) -> None:
    traffic._series.clear()
    traffic.parse_metrics(text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hosts", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=20)
    args = ap.parse_args()
    base = FIXTURE.read_text()
    for label, text in (("captured", base), ("busier", busier(base))):
        texts = [per_host(text, i) for i in range(args.hosts)]
        sample_lines = sum(1 for ln in text.splitlines() if ln.startswith("traefik_service_request")
                           and "_count{" not in ln and "_bytes" not in ln)
        whole = best(lambda t=text: list(text_string_to_metric_families(t)), args.rounds)
        first = best(lambda t=text: cold(t), args.rounds)
        traffic.parse_metrics(text)
        later = best(lambda t=texts[1]: traffic.parse_metrics(t), args.rounds)
        t0 = time.perf_counter()
        for t in texts:
            traffic.parse_metrics(t)
        fleet = time.perf_counter() - t0
        print(f"{label}: {len(text) / 1024:.0f} KiB, {len(text.splitlines())} lines, {sample_lines} read")
        print(f"  prometheus_client on the whole text  {whole * 1e3:7.2f} ms")
        print(f"  parse_metrics, new series             {first * 1e3:7.2f} ms")
        print(f"  parse_metrics, series seen before     {later * 1e3:7.2f} ms")
        print(f"  {args.hosts} hosts, one round                {fleet * 1e3:7.1f} ms")
    ss = "".join(f"0      0      127.0.0.1:{40000 + i} 127.0.0.1:{8081 + i % 2}\n" for i in range(50))
    print(f"ss, 50 connections in flight: {best(lambda: host_slots.count_by_port(ss), args.rounds) * 1e6:.0f} us")


if __name__ == "__main__":
    main()
