"""A small in-process sandbox (2 hosts, fast LB checks) and the real CLI against it, for the tests
that drive whole commands: one place for both, so the tests differ only in what they check."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path


@contextlib.asynccontextmanager
async def small_sandbox(tmp_path: Path) -> AsyncIterator:
    """Two hosts; LB interval 3 s, timeout 3 s, unhealthy 2, healthy 2; stopped afterwards."""
    from zdd_tui.sandbox.supervisor import Sandbox, SandboxOptions

    sb = Sandbox(SandboxOptions(state_dir=tmp_path / "sandbox", hosts=2, lb_interval=3, lb_timeout=3,
                                lb_unhealthy=2, lb_healthy=2, stop_grace_seconds=3, host_shutdown_grace=3))
    await sb.start()
    try:
        yield sb
    finally:
        await sb.stop()


async def cli(*args: str, stdin: str | None = None, env: dict[str, str] | None = None,
              cwd: Path | str | None = None) -> tuple[int, str, str]:
    """`zdd-tui ARGS` as its own process: (exit code, stdout, stderr); stdin closed unless given."""
    p = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "zdd_tui", *args,
        stdin=asyncio.subprocess.DEVNULL if stdin is None else asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})}, cwd=cwd)
    out, err = await asyncio.wait_for(p.communicate(None if stdin is None else stdin.encode()), 240)
    return p.returncode or 0, out.decode(), err.decode()
