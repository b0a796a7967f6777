"""A load generator for rollout tests and the benchmark: a steady request rate through the LB,
counting every non-2xx answer and every connection error or timeout.

A 500 whose body carries the sample service's marker (`"injected": true`, its ZDD_ERROR_RATE) is
the version's own failure, not the rollout's: it is counted apart (`injected`), not as failed.
Every answer is also counted per 10 ms of the machine's monotonic clock (`answered_at`,
`injected_at`), the clock the rollout engine stamps its events with, so a test can count what
the load saw in the window of a rollout's own traffic numbers.

Bounded in time and in count, so a hung test cannot leave it running. Usable in-process
(`Load`) or as a script: `python tests/rollout/loadgen.py URL --rate 250 --seconds 60`
(prints one JSON line with the counts).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
from dataclasses import dataclass, field

import aiohttp

TICKS = 100  # per second, in answered_at / injected_at


def _tick(ticks: dict, now: float) -> None:
    t = int(now * TICKS)
    ticks[t] = ticks.get(t, 0) + 1


@dataclass
class LoadResult:
    sent: int = 0
    ok: int = 0
    failed: int = 0
    statuses: dict = field(default_factory=dict)  # non-2xx status -> count
    errors: dict = field(default_factory=dict)  # exception type -> count
    first_failures: list = field(default_factory=list)  # (seconds since start, what)
    seconds: float = 0.0
    versions: dict = field(default_factory=dict)  # "version" in GET / answers -> count
    injected: int = 0  # 500s the version answered on purpose (marked "injected"): not failures
    # int(time.monotonic() * TICKS) -> answers received then (any status; injected ones alone)
    answered_at: dict = field(default_factory=dict)
    injected_at: dict = field(default_factory=dict)

    @property
    def answered(self) -> int:
        """Requests that got an HTTP answer, whatever its status."""
        return sum(self.answered_at.values())

    def count(self, since: float, until: float, *, injected: bool = False) -> int:
        """Answers received between two readings of time.monotonic() (to the nearest tick)."""
        lo, hi = round(since * TICKS), round(until * TICKS)
        ticks = self.injected_at if injected else self.answered_at
        return sum(n for t, n in ticks.items() if lo <= t < hi)

    @property
    def rate(self) -> float:
        return self.sent / self.seconds if self.seconds else 0.0

    def summary(self) -> str:
        injected = f", {self.injected} injected 500s" if self.injected else ""
        return (f"{self.sent} requests in {self.seconds:.1f}s ({self.rate:.0f}/s): {self.ok} ok{injected}, "
                f"{self.failed} failed {self.statuses or ''}{self.errors or ''}")


class Load:
    def __init__(self, url: str, rate: float = 250.0, *, max_seconds: float = 300.0,
                 max_requests: int | None = None, timeout: float = 10.0, concurrency: int = 256):
        self.url = url
        self.rate = rate
        self.max_seconds = max_seconds
        self.max_requests = max_requests or int(rate * max_seconds) + 1
        self.timeout = timeout
        self.concurrency = concurrency
        self.result = LoadResult()
        self._stop = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._t0 = 0.0

    async def start(self) -> Load:
        self._task = asyncio.create_task(self._run())
        return self

    async def stop(self) -> LoadResult:
        self._stop.set()
        if self._task is not None:
            await self._task
        return self.result

    def _fail(self, what: str) -> None:
        r = self.result
        r.failed += 1
        if len(r.first_failures) < 20:
            r.first_failures.append((round(time.monotonic() - self._t0, 2), what))

    async def _one(self, session: aiohttp.ClientSession, sem: asyncio.Semaphore) -> None:
        r = self.result
        try:
            async with session.get(self.url) as resp:
                body = await resp.read()
                now = time.monotonic()
                _tick(r.answered_at, now)
                if resp.status == 500 and _injected(body):
                    r.injected += 1
                    _tick(r.injected_at, now)
                elif 200 <= resp.status < 300:
                    r.ok += 1
                    try:
                        v = json.loads(body).get("version", "?")
                        r.versions[v] = r.versions.get(v, 0) + 1
                    except (ValueError, AttributeError):
                        pass
                else:
                    r.statuses[resp.status] = r.statuses.get(resp.status, 0) + 1
                    self._fail(f"HTTP {resp.status}")
        except Exception as exc:  # noqa: BLE001 - every error counts as a failed request
            name = type(exc).__name__
            r.errors[name] = r.errors.get(name, 0) + 1
            self._fail(name)
        finally:
            sem.release()

    async def _run(self) -> None:
        self._t0 = time.monotonic()
        period = 1.0 / self.rate
        sem = asyncio.Semaphore(self.concurrency)
        pending: set[asyncio.Task] = set()
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        conn = aiohttp.TCPConnector(limit=self.concurrency, force_close=False)
        async with aiohttp.ClientSession(timeout=timeout, connector=conn) as session:
            n = 0
            while not self._stop.is_set() and n < self.max_requests:
                elapsed = time.monotonic() - self._t0
                if elapsed >= self.max_seconds:
                    break
                # Fixed schedule: catch up after a stall instead of silently lowering the rate.
                due = n * period - elapsed
                if due > 0:
                    try:
                        await asyncio.wait_for(self._stop.wait(), due)
                        break
                    except TimeoutError:
                        pass
                await sem.acquire()
                t = asyncio.create_task(self._one(session, sem))
                pending.add(t)
                t.add_done_callback(pending.discard)
                n += 1
                self.result.sent = n
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
        self.result.seconds = time.monotonic() - self._t0


def _injected(body: bytes) -> bool:
    try:
        return json.loads(body).get("injected") is True
    except (ValueError, AttributeError):
        return False


class LoadProcess:
    """The same load from its own process (its own CPU share on a busy 2-core CI machine).
    `stop()` sends SIGTERM and reads the JSON result line."""

    def __init__(self, url: str, rate: float = 250.0, *, max_seconds: float = 300.0, concurrency: int = 256):
        self.args = [sys.executable, __file__, url, "--rate", str(rate), "--seconds", str(max_seconds),
                     "--concurrency", str(concurrency)]
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> LoadProcess:
        self.proc = await asyncio.create_subprocess_exec(*self.args, stdout=asyncio.subprocess.PIPE)
        line = await asyncio.wait_for(self.proc.stdout.readline(), 30)  # "ready"
        assert line.strip() == b"ready", line
        return self

    async def stop(self) -> LoadResult:
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        out, _ = await asyncio.wait_for(self.proc.communicate(), 60)
        d = json.loads(out.decode().strip().splitlines()[-1])
        d.pop("rate", None)
        for name in ("statuses", "answered_at", "injected_at"):
            d[name] = {int(k): v for k, v in d[name].items()}
        return LoadResult(**d)


async def _main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("--rate", type=float, default=250)
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--concurrency", type=int, default=256)
    a = ap.parse_args()
    load = Load(a.url, a.rate, max_seconds=a.seconds, concurrency=a.concurrency)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, load._stop.set)
    await load.start()
    print("ready", flush=True)
    await load._task
    r = load.result
    print(json.dumps({**r.__dict__, "rate": r.rate}), flush=True)


if __name__ == "__main__":
    asyncio.run(_main())
