"""Child processes of the sandbox and the small file helpers its hosts share.

`Child` is one supervised process with Docker's restart semantics: it runs in its own session (a
Ctrl-C in the terminal reaches only the sandbox, which then stops its children in order), with a
parent-death signal (it does not outlive a sandbox that is killed outright), and it is started
again after it exits, with a doubling backoff, until it is stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import logging
import os
import random
import signal
import socket
import time
from collections.abc import Callable, Sequence
from pathlib import Path

log = logging.getLogger(__name__)

# Environment a child inherits from the sandbox; nothing else (no tokens, no ZDD_*).
INHERIT = ("PATH", "PYTHONPATH", "HOME", "LANG", "LC_ALL", "VIRTUAL_ENV", "TMPDIR", "SYSTEMROOT")


def write_atomic(path: Path, text: str, mode: int | None = None) -> None:
    """Replace `path` by rename: a reader (or a watcher) sees the old file or the new, never half."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{random.randrange(1 << 30)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666 if mode is None else mode)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def read_json(path: Path, default):
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return default


def _load_prctl() -> Callable[..., int] | None:
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # not Linux: no parent-death signal
        return None


# Resolved here, in the parent: the child between fork and exec must not dlopen or import (locks
# another thread of the sandbox held at the fork would never be released there).
_PRCTL = _load_prctl()


def pdeathsig() -> None:
    """In the child before exec: SIGTERM me when the sandbox process dies (Linux prctl)."""
    if _PRCTL is not None:
        _PRCTL(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def can_bind(address: str, port: int) -> bool:
    """Whether a listener could bind address:port now. As listeners do (Traefik, asyncio), with
    SO_REUSEADDR: connections of a process that just ended linger in TIME_WAIT and block only a
    bind without it."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((address, port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def pid_alive(pid: int) -> bool:
    """Alive and not a zombie (PID 1 here reaps slowly; /proc says Z before the PID vanishes)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def kill_leftover(pid: int | None, marks: Sequence[bytes]) -> None:
    """A child of a previous sandbox run that is somehow still alive (the sandbox was killed and
    the death signal missed) would hold its address: SIGKILL it, but only if it is really ours
    (its environment or command line holds every one of `marks`)."""
    if not pid or not pid_alive(pid):
        return
    try:
        seen = Path(f"/proc/{pid}/environ").read_bytes() + b"\0" + Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return
    parts = seen.split(b"\0")
    if all(m in parts for m in marks):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


async def end_process(proc: asyncio.subprocess.Process, grace: float | None) -> int | None:
    """SIGTERM, up to `grace` seconds, then SIGKILL (grace None: SIGKILL at once); the exit code."""
    if proc.returncode is not None:
        return proc.returncode
    try:
        if grace is None:
            proc.kill()
            return await proc.wait()
        proc.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(proc.wait(), max(0.0, grace))
    except TimeoutError:
        # It may exit, and be reaped, between the grace's end and the kill.
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        return await proc.wait()
    except ProcessLookupError:
        return await proc.wait()


class Child:
    """One supervised child process (see module doc).

    `on_change()` is called after every change of state (started, restarting, stopped), so the
    owner can persist what it shows. `state`: created | running | restarting | exited.
    """

    def __init__(
        self,
        argv: Sequence[str],
        env: dict[str, str],
        *,
        cwd: Path,
        log_file: Path,
        label: str,
        on_change: Callable[[], None] = lambda: None,
        backoff: float = 0.1,
        restart_count: int = 0,
    ):
        self.argv = list(argv)
        self.env = env
        self.cwd = cwd
        self.log_file = log_file
        self.label = label
        self.on_change = on_change
        self.backoff = backoff
        self.proc: asyncio.subprocess.Process | None = None
        self._task: asyncio.Task | None = None
        self._stopping = False
        self._wake = asyncio.Event()
        self.state = "created"
        self.started_at: float | None = None
        self.exit_code: int | None = None
        self.restart_count = restart_count

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.returncode is None else None

    @property
    def alive(self) -> bool:
        return self._task is not None and not self._stopping

    def note(self, event: str) -> None:
        """A line of the sandbox's own in the child's log (a local append: quick)."""
        with open(self.log_file, "ab") as logf:
            logf.write(f"[sandbox] {self.label} {event}\n".encode())

    async def _spawn(self) -> asyncio.subprocess.Process:
        with open(self.log_file, "ab") as logf:  # noqa: ASYNC230 - a local file, opened to hand to the child
            return await asyncio.create_subprocess_exec(
                *self.argv,
                env=self.env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=logf,
                stderr=asyncio.subprocess.STDOUT,
                cwd=str(self.cwd),
                start_new_session=True,
                preexec_fn=pdeathsig,
            )

    def _started(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.state = "running"
        self.started_at = time.time()
        self.on_change()

    async def start(self) -> None:
        self._stopping = False
        self._wake.clear()
        proc = await self._spawn()
        self._started(proc)
        self._task = asyncio.create_task(self._supervise(proc), name=f"child-{self.label}")

    async def _supervise(self, proc: asyncio.subprocess.Process) -> None:
        """Restart after an exit, with Docker's doubling backoff (reset after a stable run).

        Never cancelled: `stop` sets `_stopping`, wakes the backoff and ends the process; this
        loop then returns by itself, so a restart is never cut half-way (a process nobody knows)."""
        backoff = self.backoff
        while True:
            started = time.monotonic()
            rc = await proc.wait()
            if self._stopping:
                return
            self.note(f"exited with code {rc}; restarting")
            if time.monotonic() - started > 10:
                backoff = self.backoff
            self.state, self.exit_code = "restarting", rc
            self.restart_count += 1
            self.on_change()
            try:
                await asyncio.wait_for(self._wake.wait(), backoff)
            except TimeoutError:
                pass
            backoff = min(backoff * 2, 8.0)
            if self._stopping:
                return
            proc = await self._spawn()
            self._started(proc)
            if self._stopping:
                return  # stop() came during the spawn: it sees the new process in self.proc

    async def stop(self, grace: float | None) -> int | None:
        """End the process (SIGTERM, grace, SIGKILL; None: SIGKILL now) and the restarts."""
        self._stopping = True
        self._wake.set()
        rc = None
        while True:
            proc = self.proc
            if proc is not None:
                rc = await end_process(proc, grace)
            if self._task is not None:
                await asyncio.gather(self._task, return_exceptions=True)  # prompt now (see _supervise)
                self._task = None
            if self.proc is proc:
                break
        self.proc = None
        self.state, self.exit_code = "exited", rc
        self.on_change()
        return rc
