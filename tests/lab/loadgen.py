"""Load through the LB during the lab's deploys, counted per phase; and a watcher for secrets in
process lists. Both run in background threads, are bounded in time, and stop by themselves.

A 500 whose body carries the sample service's marker (`"injected": true`, its ZDD_ERROR_RATE) is
the version's own answer, not the rollout's failure: it is counted apart (`injected`). Every answer
is also counted per 10 ms of the machine's monotonic clock, by the version that gave it (`answers`),
the clock the rollout stamps its events with, so a test can count what the load saw in the window
of the rollout's own traffic numbers."""

from __future__ import annotations

import asyncio
import collections
import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp


@dataclass
class PhaseStats:
    name: str
    started: float = field(default_factory=time.monotonic)
    ended: float | None = None
    sent: int = 0
    ok: int = 0
    failed: int = 0
    injected: int = 0  # 500s the version answered on purpose: not failures
    failures: list[str] = field(default_factory=list)  # the first few, for the report
    versions: collections.Counter = field(default_factory=collections.Counter)
    ids: set = field(default_factory=set)
    max_latency: float = 0.0
    latencies: list[float] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return (self.ended or time.monotonic()) - self.started

    @property
    def rate(self) -> float:
        return self.sent / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        lat = sorted(self.latencies)
        p99 = lat[int(len(lat) * 0.99)] if lat else 0.0
        vers = ", ".join(f"{v}: {n}" for v, n in sorted(self.versions.items()))
        return (f"{self.name:<28} {self.seconds:6.1f} s  {self.sent:6d} sent  {self.rate:6.1f} req/s  "
                f"{self.failed} failed  {self.injected} injected  p99 {p99 * 1000:.0f} ms  "
                f"max {self.max_latency * 1000:.0f} ms  "
                f"instances {len(self.ids)}  versions {{{vers}}}")


def sample_service_body(body: dict) -> str | None:
    """None when body is the sample service's answer to GET /, else what is wrong."""
    return None if body.get("api") == "happy response" else "not the sample service's body"


def sample_or_minimal_body(body: dict) -> str | None:
    """The sample service's answer, or the minimal app's (tests/lab/images/minimal)."""
    return None if body.get("api") == "happy response" or body.get("app") == "minimal" else "an unknown body"


TICKS = 100  # per second, in LoadGenerator.answers
INJECTED = "injected 500"  # the version of an injected 500 in LoadGenerator.answers


def injected(status: int, text: str) -> bool:
    """The sample service's own 500 (its ZDD_ERROR_RATE), told by the marker in its body."""
    if status != 500:
        return False
    try:
        body = json.loads(text)
    except ValueError:
        return False
    return isinstance(body, dict) and body.get("injected") is True


class LoadGenerator:
    """GET / at `rate` req/s through `url`; every answer must be 200 with a body `accept` takes
    (it returns None for a good body, else what is wrong); its "version" and "id" are counted."""

    def __init__(self, url: str, rate: float = 250.0, concurrency: int = 64, max_seconds: float = 1200.0,
                 timeout: float = 15.0, first_phase: str = "start",
                 accept: Callable[[dict], str | None] = sample_service_body):
        self.url = url
        self.accept = accept
        self.rate = rate
        self.concurrency = concurrency
        self.max_seconds = max_seconds
        self.timeout = timeout
        self.phases: list[PhaseStats] = []
        self.current = PhaseStats(first_phase)
        self.phases.append(self.current)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.error: BaseException | None = None
        # (int(time.monotonic() * TICKS), version or INJECTED or None) -> answers then
        self.answers: collections.Counter = collections.Counter()

    def start(self) -> LoadGenerator:
        self._thread = threading.Thread(target=self._main, name="lab-load", daemon=True)
        self._thread.start()
        return self

    def phase(self, name: str) -> PhaseStats:
        """Start counting into a new phase; returns the one that ended."""
        with self._lock:
            old = self.current
            old.ended = time.monotonic()
            self.current = PhaseStats(name)
            self.phases.append(self.current)
        return old

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=self.timeout + 10)
        with self._lock:
            if self.current.ended is None:
                self.current.ended = time.monotonic()

    def count(self, since: float, until: float, version: str | None = None) -> int:
        """Answers received between two readings of time.monotonic() (to the nearest tick): all
        of them, or those of one version (INJECTED: the injected 500s)."""
        lo, hi = round(since * TICKS), round(until * TICKS)
        with self._lock:
            counts = list(self.answers.items())
        return sum(n for (t, v), n in counts if lo <= t < hi and (version is None or v == version))

    def _main(self) -> None:
        try:
            asyncio.run(self._run())
        except BaseException as exc:  # noqa: BLE001 (reported by the test)
            self.error = exc

    async def _run(self) -> None:
        sem = asyncio.Semaphore(self.concurrency)
        conn = aiohttp.TCPConnector(limit=self.concurrency, force_close=False)
        tasks: set[asyncio.Task] = set()
        async with aiohttp.ClientSession(connector=conn, timeout=aiohttp.ClientTimeout(total=self.timeout)) as s:
            t0 = time.monotonic()
            n = 0
            while not self._stop.is_set() and time.monotonic() - t0 < self.max_seconds:
                due = t0 + n / self.rate
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                n += 1
                await sem.acquire()
                task = asyncio.create_task(self._one(s, sem))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            if tasks:
                await asyncio.wait(tasks, timeout=self.timeout + 5)

    async def _one(self, s: aiohttp.ClientSession, sem: asyncio.Semaphore) -> None:
        with self._lock:
            ph = self.current
            ph.sent += 1
        t = time.monotonic()
        err = None
        body = None
        answered: tuple[int, str | None] | None = None
        own_500 = False
        try:
            async with s.get(self.url) as r:
                text = await r.text()
                answered = (int(time.monotonic() * TICKS), None)
                if injected(r.status, text):
                    own_500 = True
                    answered = (answered[0], INJECTED)
                elif r.status != 200:
                    err = f"HTTP {r.status}: {text[:120]!r}"
                else:
                    body = json.loads(text)
                    wrong = self.accept(body) if isinstance(body, dict) else "not a JSON object"
                    if wrong:
                        err = f"{wrong}: {text[:120]!r}"
                    elif isinstance(body, dict):
                        answered = (answered[0], str(body.get("version")))
        except Exception as exc:  # noqa: BLE001
            err = f"{type(exc).__name__}: {exc}"
        finally:
            sem.release()
        dt = time.monotonic() - t
        with self._lock:
            ph.max_latency = max(ph.max_latency, dt)
            if len(ph.latencies) < 200_000:
                ph.latencies.append(dt)
            if answered is not None:
                self.answers[answered] += 1
            if own_500:
                ph.injected += 1
            elif err is None and body is not None:
                ph.ok += 1
                ph.versions[str(body.get("version"))] += 1
                ph.ids.add(body.get("id"))
            else:
                ph.failed += 1
                if len(ph.failures) < 10:
                    ph.failures.append(f"{time.strftime('%H:%M:%S')} {err}")


class SecretWatcher:
    """Samples every process's argv (and the environment of processes in the given network
    namespaces, i.e. on the lab hosts) for the given secret strings."""

    def __init__(self, secrets: dict[str, str], host_netns: list[str], interval: float = 0.25,
                 max_seconds: float = 1500.0):
        self.secrets = {k: v.encode() for k, v in secrets.items() if v}
        self.host_netns_inodes = set()
        for ns in host_netns:
            try:
                self.host_netns_inodes.add(os.stat(f"/run/netns/{ns}").st_ino)
            except OSError:
                pass
        self.interval = interval
        self.max_seconds = max_seconds
        self.hits: list[str] = []
        self.samples = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> SecretWatcher:
        self._thread = threading.Thread(target=self._main, name="lab-secret-watch", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)

    def _check(self, what: str, pid: str, data: bytes) -> None:
        for name, value in self.secrets.items():
            if value in data and len(self.hits) < 50:
                try:
                    comm = open(f"/proc/{pid}/comm").read().strip()
                except OSError:
                    comm = "?"
                self.hits.append(f"{name} in {what} of pid {pid} ({comm})")

    def sample(self) -> None:
        me = str(os.getpid())
        for pid in os.listdir("/proc"):
            if not pid.isdigit() or pid == me:
                continue
            try:
                self._check("argv", pid, open(f"/proc/{pid}/cmdline", "rb").read())
                if self.host_netns_inodes and os.stat(f"/proc/{pid}/ns/net").st_ino in self.host_netns_inodes:
                    self._check("environment", pid, open(f"/proc/{pid}/environ", "rb").read())
            except OSError:
                continue
        self.samples += 1

    def _main(self) -> None:
        t0 = time.monotonic()
        while not self._stop.is_set() and time.monotonic() - t0 < self.max_seconds:
            self.sample()
            self._stop.wait(self.interval)
