"""The poll schedule and its request budget, on a virtual clock (no Textual, no network)."""

from __future__ import annotations

import asyncio

from zdd_tui.ui.poller import Poller, RequestBudget, Task

from .virtual_clock import VirtualClock


class CountingAPI:
    """Stands in for a DO client: every call costs `pages` requests."""

    def __init__(self, clock: VirtualClock):
        self.clock = clock
        self.requests_made = 0
        self.calls: list[tuple[float, str]] = []

    def call(self, name: str, pages: int = 1):
        async def fn():
            self.requests_made += pages
            self.calls.append((self.clock.now(), name))
            return name

        return fn


def test_budget_sliding_window():
    b = RequestBudget(per_minute=10, window=60)
    b.spend(0, 6)
    b.spend(10, 4)
    assert b.used(10) == 10
    assert not b.allows(20, 1)
    assert b.next_slot(20, 1) == 60  # the first 6 leave the window at t=60
    assert b.allows(60, 6)
    assert b.next_slot(65, 7) == 70  # 4 spent at 10 leave at 70


def max_in_any_window(times_costs, window=60.0):
    worst = 0
    for start, _ in times_costs:
        worst = max(worst, sum(c for t, c in times_costs if start <= t < start + window))
    return worst


async def test_budget_holds_when_fleet_is_huge():
    """1,000 droplets = 5 pages per list: the intervals alone would exceed 40/min; the budget does not."""
    clock = VirtualClock()
    api = CountingAPI(clock)
    spent: list[tuple[float, int]] = []
    tasks = [
        Task("droplets", api.call("droplets", pages=5), interval=5, api=True),
        Task("tags", api.call("tags", pages=5), interval=5, api=True),
        Task("lb_health", api.call("lb_health"), interval=2, api=True),
        Task("hosts", api.call("hosts", pages=0), interval=2),
    ]
    poller = Poller(tasks, sink=lambda *a: None, request_counter=lambda: api.requests_made, clock=clock)
    orig = poller.budget.spend
    poller.budget.spend = lambda now, n: (spent.append((now, n)), orig(now, n))
    await poller.run(until=600)
    assert api.requests_made > 300  # it did keep polling, close to the budget
    assert api.requests_made <= 40 * 10
    assert max_in_any_window(spent) <= 40
    assert poller.deferred > 0
    # Host probes (no API) are not held back by the budget: every 2 s.
    host_runs = [t for t, n in api.calls if n == "hosts"]
    assert len(host_runs) >= 295


async def test_rollout_schedule_is_faster_and_pause_stops_polling():
    clock = VirtualClock()
    api = CountingAPI(clock)
    tasks = [Task("lb_health", api.call("lb_health"), interval=20, rollout_interval=5, api=True)]
    results = []
    poller = Poller(tasks, sink=lambda n, r, e: results.append(n), request_counter=lambda: api.requests_made,
                    clock=clock)
    await poller.run(until=60)
    idle = api.requests_made
    assert idle == 3  # t=0, 20, 40
    poller.set_rollout(True)
    await poller.run(until=120)
    assert api.requests_made - idle >= 11  # every 5 s now
    poller.pause()
    before = api.requests_made
    task = asyncio.create_task(poller.run(until=10_000))
    for _ in range(50):
        await asyncio.sleep(0)
    assert api.requests_made == before and not task.done()
    poller.resume()
    await asyncio.wait_for(task, 5)
    assert api.requests_made > before


async def test_a_failing_task_is_reported_and_the_loop_goes_on():
    clock = VirtualClock()
    seen = []

    async def boom():
        raise RuntimeError("API unreachable")

    async def ok():
        return 1

    poller = Poller([Task("lb", boom, interval=10, api=True), Task("hosts", ok, interval=2)],
                    sink=lambda n, r, e: seen.append((n, type(e).__name__ if e else r)), clock=clock)
    await poller.run(until=30)
    assert ("lb", "RuntimeError") in seen
    assert seen.count(("hosts", 1)) >= 14
