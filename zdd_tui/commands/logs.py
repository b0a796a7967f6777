"""`zdd-tui logs [HOST] [-f] [-n N]`: the app container's logs (stdout and stderr) from one host
or from every host, each line prefixed with its host; `-f` follows them until Ctrl-C.

The hosts' runtimes give a container's last N lines (no timestamps, no stream), so following
polls them and prints what is new: the longest end of the previous window that starts the new one
is what was seen already. A line repeated exactly across a whole poll can therefore be missed,
and a burst of more than N lines between two polls loses its start (said when it happens).
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path
from typing import Any

from zdd_tui.errors import UsageError
from zdd_tui.text import visible

POLL_SECONDS = 2.0


def register(sub, common):
    p = sub.add_parser("logs", parents=[common], help="the app container's logs, from one host or all (-f follows)",
                       description="The app container's logs from HOST, or from every host (each line prefixed "
                                   "with its host). -f keeps following them until Ctrl-C.")
    p.add_argument("host", metavar="HOST", nargs="?", default=None, help="a droplet's name (default: every host)")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new lines until Ctrl-C")
    p.add_argument("-n", "--tail", type=int, default=100, metavar="N",
                   help="how many of the last lines to show first, per host (default 100)")
    p.set_defaults(func=run)


def new_lines(before: list[str], now: list[str]) -> tuple[list[str], bool]:
    """The lines of `now` (a later window of the same log's last lines) not in `before`, and
    whether some may have been missed (no overlap at all: more came than a window holds, or the
    container was replaced)."""
    if not before:
        return now, False
    for k in range(min(len(before), len(now)), 0, -1):
        if before[-k:] == now[:k]:
            return now[k:], False
    return now, True


async def run(args) -> int:
    from zdd_tui.config import load_config
    from zdd_tui.project import Project

    if args.tail < 1:
        raise UsageError(f"-n {args.tail}: expected a positive number of lines")
    config = load_config(Path(args.config))
    async with await Project.open(config, context=args.context) as project:
        droplets = await project.droplets()
        if args.host is not None:
            droplets = [d for d in droplets if d.name == args.host]
            if not droplets:
                names = ", ".join(d.name for d in await project.droplets()) or "none"
                raise UsageError(f"no droplet named '{args.host}' in the fleet (droplets: {names})")
        if not droplets:
            raise UsageError(f"no droplets tagged '{config.droplets.tag}'", "run 'zdd-tui setup' first")
        width = max(len(d.name) for d in droplets)
        prefix = len(droplets) > 1 or args.host is None

        def show(name: str, line: str) -> None:
            # project.logs made every line visible: a container logs what its clients send.
            print(f"{name:<{width}} | {line}" if prefix else line, flush=True)

        async def one(droplet) -> int:
            try:
                lines = await project.logs(droplet, args.tail)
            except Exception as exc:  # noqa: BLE001 - one silent host must not hide the others
                print(f"zdd-tui: {droplet.name}: cannot read the logs: {type(exc).__name__}: {visible(str(exc))}",
                      file=sys.stderr)
                return 1
            for line in lines:
                show(droplet.name, line)
            if not args.follow:
                return 0
            while True:
                await asyncio.sleep(POLL_SECONDS)
                try:
                    now = await project.logs(droplet, args.tail)
                except Exception as exc:  # noqa: BLE001 - a host may come back: keep following
                    print(f"zdd-tui: {droplet.name}: cannot read the logs ({type(exc).__name__}); retrying",
                          file=sys.stderr)
                    continue
                fresh, gap = new_lines(lines, now)
                if gap and lines:
                    print(f"zdd-tui: {droplet.name}: lines may be missing here (more than {args.tail} came "
                          "at once, or the container was replaced)", file=sys.stderr)
                for line in fresh:
                    show(droplet.name, line)
                lines = now

        if not args.follow:
            codes = [await one(d) for d in droplets]
            return max(codes)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, stop.set)
            except (NotImplementedError, RuntimeError):
                pass  # Ctrl-C then ends it as an interruption
        # A host's follower ends only when its first read fails; the command ends on Ctrl-C, or
        # when every host has failed.
        followers = asyncio.ensure_future(asyncio.gather(*(one(d) for d in droplets)))
        waiter = asyncio.ensure_future(stop.wait())
        both: list[asyncio.Future[Any]] = [waiter, followers]
        try:
            await asyncio.wait(both, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in both:
                t.cancel()
            await asyncio.gather(*both, return_exceptions=True)
            for sig in (signal.SIGINT, signal.SIGTERM):
                try:
                    loop.remove_signal_handler(sig)
                except (NotImplementedError, RuntimeError):
                    pass
        return 0 if stop.is_set() else 1
