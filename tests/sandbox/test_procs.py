"""The sandbox's process ending (end_process), at the moment a process exits by itself."""

from __future__ import annotations

import asyncio

from zdd_tui.sandbox.procs import end_process


class ExitsAtTheGrace:
    """A process that ignores SIGTERM for the whole grace, then exits and is reaped just before
    the SIGKILL (asyncio then raises ProcessLookupError on kill)."""

    returncode = None

    def __init__(self) -> None:
        self.exited = asyncio.Event()

    def send_signal(self, sig: int) -> None:
        pass

    def kill(self) -> None:
        self.exited.set()
        raise ProcessLookupError

    async def wait(self) -> int:
        await self.exited.wait()
        return 0


async def test_a_process_that_exits_as_its_grace_ends_is_stopped_not_an_error():
    assert await end_process(ExitsAtTheGrace(), 0.01) == 0  # type: ignore[arg-type]
