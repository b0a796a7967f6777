"""Reading a `zdd-tui sandbox up --json` child: the one JSON line it prints once it is ready."""

from __future__ import annotations

import selectors
import subprocess
import time


def ready_line(proc: subprocess.Popen, timeout: float) -> str:
    """The child's first non-empty stdout line (text mode); RuntimeError if it exits first."""
    assert proc.stdout is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sel.select(0.5):
            line = proc.stdout.readline()
            if line.strip():
                return line
        if proc.poll() is not None:
            raise RuntimeError(f"sandbox up exited with {proc.returncode}")
    raise TimeoutError("sandbox up printed no JSON line")
