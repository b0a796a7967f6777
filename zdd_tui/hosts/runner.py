"""The one runner for host commands: argv in, exit status and output out, over a pooled SSH connection.

Output streams line by line to a callback as it arrives (the engine turns lines into LogLine
events). A non-zero exit becomes RuntimeFailure with the command and the tail of stderr; a
connection that drops mid-command becomes HostUnreachable.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import asyncssh

from zdd_tui.hosts.argv import to_command_line
from zdd_tui.hosts.ssh import SSHPool, SSHUnreachable
from zdd_tui.rollout.interfaces import HostUnreachable, RuntimeFailure

# (stream, line) with stream "stdout" | "stderr"; the line has no trailing newline.
LineCallback = Callable[[str, str], None]

STDERR_TAIL_LINES = 12


@dataclass(frozen=True)
class CommandResult:
    argv: tuple[str, ...]
    exit_status: int
    stdout: str
    stderr: str


class CommandFailed(RuntimeFailure):
    """A host command exited non-zero (or was killed by a signal)."""

    def __init__(self, host: str, argv: Sequence[str], exit_status: int | None, stderr: str, signal: str | None = None):
        self.host = host
        self.argv = tuple(argv)
        self.exit_status = exit_status
        self.stderr = stderr
        how = f"was killed by signal {signal}" if signal else f"exited with status {exit_status}"
        tail = stderr_tail(stderr)
        super().__init__(f"on {host}: `{describe_argv(argv)}` {how}" + (f": {tail}" if tail else ""))


def stderr_tail(stderr: str, lines: int = STDERR_TAIL_LINES) -> str:
    kept = [ln for ln in stderr.strip().splitlines() if ln.strip()][-lines:]
    return " | ".join(kept)


def describe_argv(argv: Sequence[str]) -> str:
    """A short, readable form: a `sh -c SCRIPT NAME ARGS` shows as `NAME ARGS` (scripts are long)."""
    if len(argv) >= 4 and argv[0] == "sh" and argv[1] == "-c":
        return to_command_line(argv[3:])
    return to_command_line(argv)


class HostShell:
    """Runs argv lists on one host through the pool (the connection is shared and reused).

    on_connect runs once for each new connection, before its first use here (the runtime sweeps
    leftovers with it); the commands it runs see the connection as already greeted.
    """

    def __init__(self, pool: SSHPool, host: str, *, port: int | None = None, user: str | None = None,
                 label: str | None = None, on_connect: Callable[[HostShell], Awaitable[None]] | None = None):
        self.pool = pool
        self.host = host
        self.port = port
        self.user = user
        self.label = label or host
        self.on_connect = on_connect
        self._greeted: asyncssh.SSHClientConnection | None = None

    async def connection(self) -> asyncssh.SSHClientConnection:
        conn = await self.pool.connection(self.host, self.port, self.user)
        if self.on_connect is not None and conn is not self._greeted:
            self._greeted = conn
            await self.on_connect(self)
        return conn

    async def run(
        self,
        argv: Sequence[str],
        *,
        input: str | bytes | None = None,
        on_line: LineCallback | None = None,
        check: bool = True,
        ok_statuses: Sequence[int] = (0,),
        timeout: float | None = None,
    ) -> CommandResult:
        command = to_command_line(argv)
        conn = await self.connection()
        try:
            proc = await conn.create_process(command, encoding="utf-8", errors="replace")
        except (asyncssh.Error, OSError, ConnectionError) as exc:
            self.pool.drop(self.host, self.port, self.user)
            raise SSHUnreachable(f"{self.label}: SSH connection failed before `{describe_argv(argv)}` could start "
                                 f"({_reason(exc)})") from None

        out: list[str] = []
        err: list[str] = []

        async def pump(reader, sink: list[str], stream: str) -> None:
            async for line in reader:
                if not line:  # asyncssh yields "" at EOF; a real empty line is "\n"
                    break
                sink.append(line)
                if on_line is not None:
                    on_line(stream, line.rstrip("\n"))

        async def feed() -> None:
            if input is not None:
                data = input.decode() if isinstance(input, bytes) else input
                proc.stdin.write(data)
            proc.stdin.write_eof()

        async def whole() -> None:
            await asyncio.gather(feed(), pump(proc.stdout, out, "stdout"), pump(proc.stderr, err, "stderr"))
            await proc.wait_closed()

        try:
            if timeout is None:
                await whole()
            else:
                await asyncio.wait_for(whole(), timeout)
        except TimeoutError:
            proc.close()
            raise RuntimeFailure(
                f"on {self.label}: `{describe_argv(argv)}` did not finish within {timeout:g}s") from None
        except (asyncssh.Error, OSError, ConnectionError, BrokenPipeError) as exc:
            self.pool.drop(self.host, self.port, self.user)
            raise SSHUnreachable(
                f"{self.label}: SSH connection lost while running `{describe_argv(argv)}` ({_reason(exc)});"
                " the command's outcome on the host is unknown"
            ) from None

        status = proc.exit_status
        signal = proc.exit_signal[0] if proc.exit_signal else None
        if status is None and signal is None:
            # No exit status and no signal: the channel closed under us (connection dropped).
            self.pool.drop(self.host, self.port, self.user)
            raise SSHUnreachable(
                f"{self.label}: SSH connection lost while running `{describe_argv(argv)}`;"
                " the command's outcome on the host is unknown"
            )
        result = CommandResult(tuple(argv), status if status is not None else -1, "".join(out), "".join(err))
        if check and (signal is not None or result.exit_status not in ok_statuses):
            raise CommandFailed(self.label, argv, status, result.stderr, signal)
        return result


def _reason(exc: BaseException) -> str:
    if isinstance(exc, asyncssh.Error):
        return exc.reason or type(exc).__name__
    return str(exc) or type(exc).__name__


__all__ = ["CommandFailed", "CommandResult", "HostShell", "HostUnreachable", "LineCallback"]
