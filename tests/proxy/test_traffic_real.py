"""The traffic numbers zdd-tui reads from the real proxy (Traefik 3.7.15, zdd-tui's configuration)
against a load generator's own count: requests and 5xx answers per slot, and the p95 latency's
bucket, under a few hundred requests a second with a switch between the slots in the middle."""

from __future__ import annotations

import asyncio
import subprocess
import time
from dataclasses import dataclass, field

import pytest

from zdd_tui.hosts import argv as host_argv
from zdd_tui.hosts import slots as host_slots
from zdd_tui.proxy import traefik
from zdd_tui.traffic import INF, Counters, combine, delta, parse_metrics, quantile

pytestmark = pytest.mark.slow

CONNECTIONS = 16
# Of every 10 requests: one the backend answers 500, one it answers after SLOW_MS; the rest at once.
# So the p95 latency lies among the slow ones, inside the proxy's (0.1, 0.15] bucket.
SLOW_MS = 120


def path_of(i: int) -> str:
    return {3: "/status/500", 7: f"/ms/{SLOW_MS}"}.get(i % 10, "/")


@dataclass
class Counted:
    """The generator's own count: answers per slot (from the body) and status, and latencies."""

    done: int = 0
    per_slot: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)  # slot -> 5xx answers
    latencies: list[float] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # no answer at all


class CountingLoad:
    """Keep-alive clients sending GETs back to back (a minimal HTTP/1.1 client on asyncio
    streams, cheap enough for a loaded machine to send hundreds a second)."""

    def __init__(self, host: str, port: int, connections: int = CONNECTIONS):
        self.host, self.port, self.connections = host, port, connections
        self.count = Counted()
        self._next = 0
        self._stop = asyncio.Event()
        self._workers: list[asyncio.Task] = []

    async def _worker(self) -> None:
        c = self.count
        writer = None
        while not self._stop.is_set():
            i, self._next = self._next, self._next + 1
            request = f"GET {path_of(i)} HTTP/1.1\r\nHost: {self.host}\r\n\r\n".encode()
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection(self.host, self.port)
                t0 = time.monotonic()
                writer.write(request)
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
                status = int(head.split(b" ", 2)[1])
                length = next(int(ln.split(b":", 1)[1]) for ln in head.split(b"\r\n")
                              if ln.lower().startswith(b"content-length:"))
                slot = (await reader.readexactly(length)).decode()
                c.latencies.append(time.monotonic() - t0)
                c.per_slot[slot] = c.per_slot.get(slot, 0) + 1
                if status >= 500:
                    c.errors[slot] = c.errors.get(slot, 0) + 1
                c.done += 1
            except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError, StopIteration) as exc:
                c.failed.append(f"{type(exc).__name__}: {exc}")
                if writer is not None:
                    writer.close()
                writer = None
                await asyncio.sleep(0.01)
        if writer is not None:
            writer.close()

    def start(self) -> None:
        self._workers = [asyncio.create_task(self._worker()) for _ in range(self.connections)]

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._workers)


def exact_quantile(q: float, values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(q * len(ordered) + 0.5) - 1))]


def bucket_of(seconds: float) -> tuple[float, float]:
    """The proxy's histogram bucket (lower, upper] that holds `seconds`."""
    lower = 0.0
    for le in (*traefik.BUCKETS, INF):
        if seconds <= le:
            return lower, le
        lower = le
    raise AssertionError("unreachable")


async def test_the_proxy_numbers_agree_with_the_load_generators_count(proxy_world):
    w = proxy_world

    async def read() -> dict[str, Counters]:
        status, body = await asyncio.to_thread(w.get, traefik.METRICS_PATH)
        assert status == 200
        return parse_metrics(body)

    before = await read()  # the health of the fixture's start: no request reached a slot yet
    load = CountingLoad(w.addr, w.web_port)
    t0 = time.monotonic()
    load.start()
    await asyncio.sleep(1.5)

    # A reading while the load runs: off by at most what is in flight at that instant (one
    # request per connection: the proxy counts a request once it has answered it).
    done_before = load.count.done
    during = await read()
    done_after = load.count.done
    flying = await asyncio.to_thread(subprocess.run, host_argv.sockets_established_to(
        list(w.slot_ports.values()), w.addr), capture_output=True, text=True, check=True)
    assert sum(host_slots.count_by_port(flying.stdout).values()) <= CONNECTIONS
    seen = during["a"].requests - (before["a"].requests if "a" in before else 0)
    assert done_before - CONNECTIONS <= seen <= done_after + CONNECTIONS, (done_before, seen, done_after)

    await asyncio.to_thread(w.switch, "b")
    await asyncio.sleep(1.5)
    await load.stop()
    seconds = time.monotonic() - t0
    c = load.count
    # The last answers are counted a moment after they were sent: until the counts settle.
    deadline = time.monotonic() + 5
    while True:
        after = await read()
        window = {slot: delta(after[slot], before.get(slot)) for slot in after}
        if sum(x.requests for x in window.values()) >= c.done or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)

    rate = c.done / seconds
    print(f"\n{c.done} requests in {seconds:.1f}s ({rate:.0f}/s), per slot {c.per_slot}, 5xx {c.errors}; "
          f"proxy: " + ", ".join(f"{s} {x.requests} ({x.errors} 5xx)" for s, x in sorted(window.items())))
    assert c.failed == [], c.failed[:3]
    assert rate >= 200, f"the load was too light to prove anything: {rate:.0f} req/s"
    assert c.per_slot.get("a", 0) > 100 and c.per_slot.get("b", 0) > 100
    # Counts: exact, per slot.
    assert {s: x.requests for s, x in window.items()} == c.per_slot
    assert {s: x.errors for s, x in window.items()} == c.errors
    assert all(x.buckets[-1] == (INF, x.requests) for x in window.values())
    # The proxy counts on zdd-tui's bounds (the static configuration's), every one of them.
    assert all([le for le, _ in x.buckets] == [*traefik.BUCKETS, INF] for x in window.values())
    # p95: the proxy's (interpolated in its histogram) against the generator's own (which also
    # counts the client's side of each request).
    own = exact_quantile(0.95, c.latencies)
    lower, upper = bucket_of(own)
    proxy_p95 = quantile(0.95, combine(window.values()).buckets)
    print(f"p95: generator {own * 1e3:.0f} ms, proxy {proxy_p95 * 1e3 if proxy_p95 else 0:.0f} ms, "
          f"bucket ({lower}, {upper}]")
    # Among the slow requests ((0.1, 0.15] unless the machine is very busy).
    assert lower >= 0.1, "the latency mix did not put p95 among the slow requests"
    # The proxy times a part of each round trip the generator times, so its true p95 is at most
    # the generator's, and at least the slow requests' 120 ms at the backend; interpolated in its
    # histogram it stays inside the bucket that holds it.
    assert proxy_p95 is not None and 0.1 <= proxy_p95 <= upper
