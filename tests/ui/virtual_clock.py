"""Time that advances only when someone sleeps: five minutes of poll schedule in milliseconds
(a zdd_tui.project.Clock for the poller tests)."""

from __future__ import annotations

import asyncio


class VirtualClock:
    def __init__(self, start: float = 0.0):
        self.t = start

    def now(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.t += max(seconds, 0.0)
        await asyncio.sleep(0)  # let other tasks run, as a real sleep would
