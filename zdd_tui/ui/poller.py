"""The console's data loop: poll -> hand results to a sink -> reschedule, within an API budget.

Pure asyncio (no Textual), on the engine's Clock, so the schedule can be driven by a virtual clock in tests: the
request-count test runs five virtual minutes against the real sandbox API in a few seconds.

Why a sliding-window budget rather than fixed intervals alone: the cost of one refresh depends
on the fleet (a droplet list of 450 droplets is 3 pages), so intervals cannot promise a rate by
themselves. Every API task records what its last run cost (the client's `requests_made` delta)
and may only start when the last 60 s plus that cost stay within `per_minute`.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from zdd_tui.project import Clock, SystemClock

BUDGET_PER_MINUTE = 40  # DO allows 250/min per token; the console keeps most of it for others
WINDOW_SECONDS = 60.0


class RequestBudget:
    """At most `per_minute` requests in any `window` seconds (sliding window)."""

    def __init__(self, per_minute: int = BUDGET_PER_MINUTE, window: float = WINDOW_SECONDS):
        self.per_minute = per_minute
        self.window = window
        self._spent: deque[tuple[float, int]] = deque()

    def _trim(self, now: float) -> None:
        while self._spent and self._spent[0][0] <= now - self.window:
            self._spent.popleft()

    def used(self, now: float) -> int:
        self._trim(now)
        return sum(n for _, n in self._spent)

    def allows(self, now: float, cost: int) -> bool:
        return self.used(now) + cost <= self.per_minute

    def next_slot(self, now: float, cost: int) -> float:
        """The earliest time a request of `cost` fits."""
        self._trim(now)
        room = self.per_minute - cost
        total = sum(n for _, n in self._spent)
        for at, n in self._spent:
            if total <= room:
                break
            total -= n
            now = at + self.window
        return now

    def spend(self, now: float, n: int) -> None:
        if n > 0:
            self._spent.append((now, n))


@dataclass
class Task:
    """One thing the console refreshes. `api` tasks cost DO API requests; host tasks do not."""

    name: str
    fn: Callable[[], Awaitable[Any]]
    interval: float
    rollout_interval: float | None = None  # faster (or slower) while a rollout runs
    api: bool = False
    cost_estimate: int = 1  # requests one run makes; updated from the client after each run
    next_due: float = 0.0
    runs: int = 0

    def period(self, rollout: bool) -> float:
        return self.rollout_interval if (rollout and self.rollout_interval) else self.interval


Sink = Callable[[str, Any, "BaseException | None"], None]


@dataclass
class Poller:
    """Runs `tasks` on their schedule, within `budget`, and hands every result to `sink`.

    `request_counter` reads the client's running count of requests, to learn what each API task
    costs. The loop sleeps while paused (a modal dialog is open) and wakes early on `poke()`.
    """

    tasks: list[Task]
    sink: Sink
    request_counter: Callable[[], int] = lambda: 0
    clock: Clock = field(default_factory=SystemClock)
    budget: RequestBudget = field(default_factory=RequestBudget)
    rollout_active: bool = False
    deferred: int = 0  # runs postponed because the budget was full (shown as a figure)

    def __post_init__(self) -> None:
        self._running = asyncio.Event()
        self._running.set()
        self._wake = asyncio.Event()
        self._stopped = False
        self._by_name = {t.name: t for t in self.tasks}

    # -- control ---------------------------------------------------------------------------
    def pause(self) -> None:
        self._running.clear()

    def resume(self) -> None:
        self._running.set()
        self._wake.set()

    @property
    def paused(self) -> bool:
        return not self._running.is_set()

    def stop(self) -> None:
        self._stopped = True
        self._running.set()
        self._wake.set()

    def set_rollout(self, active: bool) -> None:
        """Switch to the rollout schedule; tasks whose period shrank become due at once."""
        if active == self.rollout_active:
            return
        self.rollout_active = active
        now = self.clock.now()
        for t in self.tasks:
            t.next_due = min(t.next_due, now + t.period(active))
        self._wake.set()

    def poke(self, *names: str) -> None:
        """Refresh these tasks as soon as the budget allows (e.g. after a rollout finished)."""
        now = self.clock.now()
        for name in names:
            if name in self._by_name:
                self._by_name[name].next_due = now
        self._wake.set()

    # -- the loop --------------------------------------------------------------------------
    async def run_once(self) -> float:
        """Run every due task once; return the time the next one is due."""
        now = self.clock.now()
        due = [t for t in self.tasks if t.next_due <= now]
        host_tasks = [t for t in due if not t.api]
        # Host tasks cost no API request: run them side by side with the API ones.
        host_job = asyncio.gather(*(self._run(t) for t in host_tasks)) if host_tasks else None
        # API tasks one at a time, so each one's cost can be read off the client's counter.
        for t in (t for t in due if t.api):
            now = self.clock.now()
            if not self.budget.allows(now, t.cost_estimate):
                t.next_due = self.budget.next_slot(now, t.cost_estimate)
                self.deferred += 1
                continue
            before = self.request_counter()
            await self._run(t)
            cost = self.request_counter() - before
            self.budget.spend(self.clock.now(), cost)
            if cost > 0:
                t.cost_estimate = cost
        if host_job is not None:
            await host_job
        return min(t.next_due for t in self.tasks)

    async def _run(self, t: Task) -> None:
        try:
            result = await t.fn()
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # noqa: BLE001 - a failed refresh is shown, never fatal to the loop
            self.sink(t.name, None, exc)
        else:
            self.sink(t.name, result, None)
        t.runs += 1
        t.next_due = self.clock.now() + t.period(self.rollout_active)

    async def run(self, until: float | None = None) -> None:
        """Loop until stop() (or until the clock passes `until`, for tests)."""
        while not self._stopped:
            await self._running.wait()
            if self._stopped:
                break
            if until is not None and self.clock.now() >= until:
                break
            next_due = await self.run_once()
            delay = max(next_due - self.clock.now(), 0.0)
            if until is not None:
                delay = min(delay, max(until - self.clock.now(), 0.0))
            if delay <= 0:
                await asyncio.sleep(0)
                continue
            self._wake.clear()
            if isinstance(self.clock, SystemClock):
                try:
                    await asyncio.wait_for(self._wake.wait(), delay)
                except TimeoutError:
                    pass
            else:
                await self.clock.sleep(delay)
