"""`zdd-tui --sandbox`: a fresh sandbox in a child process, stopped (with all it started) on quit.

A child rather than in-process: the sandbox's API, LB proxy and host supervisor then never share
the UI's event loop (key presses stay fast under load), and "nothing left behind" can be checked
by PID. The child is `zdd-tui sandbox up --json` in a temporary state dir; its one JSON line
says where the API and the config are. SIGTERM makes it stop every host it started.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from zdd_tui.errors import ZddError

START_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0


@dataclass
class SandboxProcess:
    proc: subprocess.Popen
    state_dir: Path
    info: dict
    owns_dir: bool = True

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def config_path(self) -> Path:
        return Path(self.info["config"])

    def stop(self) -> None:
        """SIGTERM, wait for it to stop its hosts; SIGKILL the group only as a last resort."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)  # its own session: only what it started
                self.proc.wait(5)
        if self.proc.stdout:
            self.proc.stdout.close()
        if self.owns_dir:
            shutil.rmtree(self.state_dir, ignore_errors=True)


def _die_with_parent() -> None:
    """SIGTERM this process when its parent dies, however it dies (a closed terminal, SIGKILL),
    so a sandbox is never left running on its own. Linux only; harmless elsewhere."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 - not Linux (no libc.so.6 or no prctl): run without it
        pass


def _exec_child(args: list[str]) -> None:
    """The child's first step, `python -m zdd_tui.ui.sandbox_proc PARENT_PID ARGV...`: set the
    death signal, then become ARGV (same PID). Not a `preexec_fn`: Python code between fork and
    exec can deadlock in a process with threads, and the console has Textual's."""
    parent, argv = int(args[0]), args[1:]
    _die_with_parent()
    if os.getppid() != parent:  # the console died before the signal was set
        sys.exit(1)
    os.execv(argv[0], argv)


def launch_sandbox(hosts: int = 3, state_dir: Path | None = None, extra: tuple[str, ...] = ()) -> SandboxProcess:
    """Start the child. Call from the main thread: the death signal is tied to the thread that
    forks, and a worker thread that ends would take the sandbox with it."""
    from zdd_tui.project.credentials import without_credentials  # here: the child's first step needs none of it

    owns = state_dir is None
    state_dir = Path(state_dir or tempfile.mkdtemp(prefix="zdd-sandbox-"))
    cmd = [sys.executable, "-m", "zdd_tui", "sandbox", "up", "--json", "--state-dir", str(state_dir),
           "--hosts", str(hosts), *extra]
    with open(state_dir / "sandbox.log", "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", __name__, str(os.getpid()), *cmd],  # see _exec_child
            stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True,
            env=without_credentials(os.environ),  # a local stand-in has no use for real credentials
        )
    return SandboxProcess(proc, state_dir, {}, owns)


def _exited(code: int, state_dir: Path) -> ZddError:
    log = state_dir / "sandbox.log"
    try:
        tail = log.read_text(errors="replace").strip().splitlines()[-3:]
    except OSError:
        tail = []
    return ZddError(f"the sandbox exited with code {code}" + (f": {' / '.join(tail)}" if tail else ""),
                    hint=f"see {log}")


def wait_ready(sp: SandboxProcess) -> SandboxProcess:
    """Block until the child prints its JSON line (fills sp.info); stop it on any failure."""
    proc, state_dir = sp.proc, sp.state_dir
    stdout = proc.stdout
    assert stdout is not None  # launched with stdout=PIPE
    deadline = time.monotonic() + START_TIMEOUT
    buf = b""
    try:
        while b"\n" not in buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ZddError(
                    f"the sandbox did not start within {START_TIMEOUT:.0f}s", hint=f"see {state_dir / 'sandbox.log'}"
                )
            ready, _, _ = select.select([stdout], [], [], min(left, 0.5))
            chunk = os.read(stdout.fileno(), 65536) if ready else b""
            buf += chunk
            if not ready and proc.poll() is not None:
                raise _exited(proc.returncode, state_dir)  # its stdout may still be held by a grandchild
            if ready and not chunk:
                # End of file without the ready line: the child is gone or going.
                try:
                    proc.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    continue  # the deadline above reports it
                raise _exited(proc.returncode, state_dir)
        sp.info = json.loads(buf.split(b"\n", 1)[0])
    except BaseException:
        sp.stop()
        raise
    return sp


def start_sandbox(hosts: int = 3, state_dir: Path | None = None, extra: tuple[str, ...] = ()) -> SandboxProcess:
    return wait_ready(launch_sandbox(hosts, state_dir, extra))


if __name__ == "__main__":
    _exec_child(sys.argv[1:])
