"""Child processes of the sandbox and the small file helpers its hosts share.

`Child` is one supervised process with Docker's restart semantics: it runs in its own session (a
Ctrl-C in the terminal reaches only the sandbox, which then stops its children in order), with a
parent-death signal (it does not outlive a sandbox that is killed outright), and it is started
again after it exits, with a doubling backoff, until it is stopped. Every long-running process of
a sandbox host is one: the app container, the local-swap slot containers and the proxy.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import logging
import os
import random
import re
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


# --- container logs ---------------------------------------------------------------------------
# A child's output (stdout and stderr, merged) goes through a pipe to the sandbox, which appends
# each line to the container's log file behind the instant it read it, as Docker's json-file
# driver does: `2026-01-02T13:04:05.123456Z <line>`. Fixed width, UTC, so stamps compare as text.
_STAMP_LEN = len("2026-01-02T13:04:05.123456Z")
_STAMPED = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z ")
MAX_LOG_LINE = 16 * 1024  # bytes of one line kept; the rest of it is cut (Docker splits at 16 KiB)


def log_stamp(at: float) -> str:
    micros = round(at * 1_000_000)
    seconds, micros = divmod(micros, 1_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{micros:06d}Z"


def log_append(path: Path, text: str, at: float | None = None) -> None:
    """One line of the sandbox's own (a local append: quick), stamped like the child's."""
    with open(path, "ab") as f:
        f.write(f"{log_stamp(time.time() if at is None else at)} {text}\n".encode())


async def pump_log(stream: asyncio.StreamReader, path: Path) -> None:
    """Append what the child writes to `path`, a stamped line at a time, until its end (EOF)."""
    pending, cut = b"", False  # cut: the line in progress was written already, up to MAX_LOG_LINE
    while True:
        try:
            chunk = await stream.read(65536)
        except (OSError, ValueError):
            chunk = b""
        lines: list[bytes] = []
        if chunk:
            data = chunk
            if cut:  # the rest of a line already written (cut): drop it, up to its end
                end = data.find(b"\n")
                data, cut = (b"", True) if end < 0 else (data[end + 1:], False)
            pending += data
            *lines, pending = pending.split(b"\n")
            if len(pending) > MAX_LOG_LINE:  # a line without end so far: keep its start, drop the rest
                lines.append(pending[:MAX_LOG_LINE])
                pending, cut = b"", True
        elif pending:
            lines, pending = [pending], b""
        if lines:
            at = log_stamp(time.time())
            data = b"".join(at.encode() + b" " + line[:MAX_LOG_LINE].rstrip(b"\r") + b"\n" for line in lines)
            try:
                with open(path, "ab") as f:  # noqa: ASYNC230 - a local append, as the child's own writes were
                    f.write(data)
            except OSError as exc:  # the child must not block on a full pipe: keep draining it
                log.warning("cannot write the log %s: %s", path, exc)
        if not chunk:
            return


class LogPumps:
    """Children started with their output going to one log file through the sandbox, a stamped
    line at a time (pump_log), and the wait for their last words after a stop."""

    def __init__(self, log_file: Path, label: str):
        self.log_file = log_file
        self.label = label
        self._tasks: set[asyncio.Task] = set()

    async def spawn(self, argv: list[str], *, env: dict[str, str], cwd: Path) -> asyncio.subprocess.Process:
        proc = await asyncio.create_subprocess_exec(
            *argv, env=env, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT, cwd=str(cwd), start_new_session=True, preexec_fn=pdeathsig)
        assert proc.stdout is not None
        task = asyncio.create_task(pump_log(proc.stdout, self.log_file), name=f"log-{self.label}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return proc

    async def flush(self) -> None:
        """Until what the stopped children wrote is in the log (bounded: a grandchild may hold the pipe)."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=2.0)


def read_log(path: Path, tail: int = 100, since: float | None = None) -> list[str]:
    """The last `tail` lines of a stamped log (all when tail <= 0), without their stamps; with
    `since` (epoch seconds), only those read at or after it."""
    try:
        raw = path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return []
    first = log_stamp(since) if since is not None else None
    out = []
    for line in raw:
        if _STAMPED.match(line):
            stamp, text = line[:_STAMP_LEN], line[_STAMP_LEN + 1:]
        else:  # written before lines were stamped (a sandbox directory of an older zdd-tui)
            stamp, text = "", line
        if first is not None and stamp < first:
            continue
        out.append(text)
    return out[-tail:] if tail > 0 else out


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
        exit_code: int | None = None,
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
        self.exit_code = exit_code  # the last exit's, kept across restarts (and sandbox runs)
        self.restart_count = restart_count
        self._pumps = LogPumps(log_file, label)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.returncode is None else None

    @property
    def alive(self) -> bool:
        return self._task is not None and not self._stopping

    def note(self, event: str) -> None:
        """A line of the sandbox's own in the child's log."""
        log_append(self.log_file, f"[sandbox] {self.label} {event}")

    async def _spawn(self) -> asyncio.subprocess.Process:
        return await self._pumps.spawn(list(self.argv), env=self.env, cwd=self.cwd)

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
        await self._pumps.flush()  # its last words land before what is noted after the stop
        self.proc = None
        self.state, self.exit_code = "exited", rc
        self.on_change()
        return rc
