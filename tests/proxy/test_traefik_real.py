"""The real proxy (Traefik 3.7.15) with zdd-tui's configuration: switches by rename drop no
keep-alive request, the socket table counts requests in flight to a slot, and the retry
middleware carries requests over a backend's short outage."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

pytestmark = pytest.mark.slow


class Load:
    """Keep-alive clients sending GETs back to back, each on its own connection (a minimal
    HTTP/1.1 client on asyncio streams: cheap, so a loaded machine still sends hundreds a second).
    Every answer that is not 200 with a slot's name, an error, or a connection the proxy closed
    under a client between two requests, is a failed request."""

    def __init__(self, host: str, port: int, connections: int = 6):
        self.host = host
        self.port = port
        self.connections = connections
        self.ok = 0
        self.failed: list[str] = []
        self.by_slot: dict[str, int] = {}
        self._stop = asyncio.Event()

    async def _worker(self) -> None:
        request = f"GET / HTTP/1.1\r\nHost: {self.host}\r\n\r\n".encode()
        writer = None
        while not self._stop.is_set():
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection(self.host, self.port)
                writer.write(request)
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
                status = int(head.split(b" ", 2)[1])
                length = next(int(ln.split(b":", 1)[1]) for ln in head.split(b"\r\n")
                              if ln.lower().startswith(b"content-length:"))
                body = (await reader.readexactly(length)).decode()
                if status == 200 and body in ("a", "b"):
                    self.ok += 1
                    self.by_slot[body] = self.by_slot.get(body, 0) + 1
                else:
                    self.failed.append(f"HTTP {status} {body[:60]!r}")
            except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError, StopIteration) as exc:
                self.failed.append(f"{type(exc).__name__}: {exc}")
                if writer is not None:
                    writer.close()
                writer = None
                await asyncio.sleep(0.01)
        if writer is not None:
            writer.close()

    async def run_while(self, work) -> float:
        """Run the load while `work()` (a blocking function, in a thread) runs; seconds taken."""
        workers = [asyncio.create_task(self._worker()) for _ in range(self.connections)]
        t0 = time.monotonic()
        await asyncio.sleep(0.5)
        try:
            await asyncio.to_thread(work)
            await asyncio.sleep(0.5)
        finally:
            self._stop.set()
            await asyncio.gather(*workers)
        return time.monotonic() - t0

    @property
    def total(self) -> int:
        return self.ok + len(self.failed)


async def test_twenty_switches_by_rename_under_keep_alive_load_fail_no_request(proxy_world):
    w = proxy_world
    load = Load(w.addr, w.web_port)
    applied: list[float] = []

    def switches() -> None:
        for i in range(20):
            applied.append(w.switch("b" if i % 2 == 0 else "a"))
            time.sleep(0.15)

    seconds = await load.run_while(switches)
    rate = load.total / seconds
    print(f"\n{load.total} requests in {seconds:.1f}s ({rate:.0f}/s), {len(load.failed)} failed, "
          f"per slot {load.by_slot}, switch applied in {min(applied):.2f}-{max(applied):.2f}s")
    kinds = sorted({f.split(":")[0] for f in load.failed})
    assert load.failed == [], f"{len(load.failed)} failed: {kinds}; first: {load.failed[:3]}"
    assert rate >= 200, f"the load was too light to prove anything: {rate:.0f} req/s"
    assert len(applied) == 20 and load.by_slot.get("a", 0) > 100 and load.by_slot.get("b", 0) > 100
    assert w.active() == "a"
    # The switch's temp files never stay behind, and the watcher never read one.
    assert sorted(p.name for p in w.dynamic_dir.iterdir()) == ["app.yml"]


async def test_in_flight_to_a_slot_is_the_number_of_requests_outstanding(proxy_world):
    w = proxy_world
    w.stop_backend("a")
    w.start_backend("a", env={"SLOW": "3"})
    assert w.in_flight("a") == 0
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as session:

        async def slow() -> int:
            async with session.get(w.url + "/slow") as r:
                await r.read()
                return r.status

        pending = [asyncio.create_task(slow()) for _ in range(5)]
        deadline = time.monotonic() + 2.5
        seen = []
        for _ in range(50):  # they reach the slow backend within a moment
            seen.append(await asyncio.to_thread(w.in_flight, "a"))
            if seen[-1] == 5 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
        assert seen[-1] == 5, seen
        assert await asyncio.to_thread(w.in_flight, "b") == 0
        # A switch while they are in flight: they finish on the old slot; new requests go to b.
        await asyncio.to_thread(w.switch, "b")
        async with session.get(w.url + "/") as r:
            assert await r.text() == "b"
        assert await asyncio.to_thread(w.in_flight, "a") == 5
        assert await asyncio.gather(*pending) == [200] * 5
    # Connections to the slots are not kept idle: once answered, nothing is in flight.
    assert await asyncio.to_thread(w.in_flight, "a") == 0


async def test_retry_carries_requests_over_a_backend_down_for_a_second_and_back(proxy_world):
    w = proxy_world
    statuses: list[int] = []
    errors: list[str] = []
    stop = asyncio.Event()

    async def client() -> None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as session:
            while not stop.is_set():
                try:
                    async with session.get(w.url + "/") as r:
                        await r.read()
                        statuses.append(r.status)
                except aiohttp.ClientError as exc:
                    errors.append(f"{type(exc).__name__}: {exc}")
                await asyncio.sleep(0.02)

    listen = w.start_backend("a", hold=True)  # its replacement, ready to listen at once
    clients = [asyncio.create_task(client()) for _ in range(3)]
    await asyncio.sleep(0.3)
    w.stop_backend("a")  # it finishes what it has; connections are refused from now on
    down_at = time.monotonic()
    await asyncio.sleep(1.0)
    before = len(statuses)
    await asyncio.to_thread(listen)  # back, as `restart unless-stopped` would bring it
    print(f"\nbackend down for {time.monotonic() - down_at:.2f}s")
    await asyncio.sleep(0.8)
    stop.set()
    await asyncio.gather(*clients)
    assert errors == []
    assert statuses and set(statuses) == {200}, sorted(set(statuses))
    # Requests were made while it was down (they waited, then succeeded), and after.
    assert len(statuses) > before > 10
