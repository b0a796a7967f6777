"""`zdd-tui logs [HOST] [-f] [-n N] [--since WHEN]`: the app container's logs (stdout and stderr)
from one host or from every host, each line prefixed with its host; `-f` follows them until Ctrl-C;
`--since` shows only what was written since then (Docker's forms: a duration back from now, like
10m or 1h30m, or a time, like 2026-01-02T15:04:05Z; see `parse_since`).

The hosts' runtimes give a container's last N lines (no timestamps, no stream), so following
polls them and prints what is new: the longest end of the previous window that starts the new one
is what was seen already. A line repeated exactly across a whole poll can therefore be missed,
and a burst of more than N lines between two polls loses its start (said when it happens).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import signal
import sys
import time
from pathlib import Path
from typing import Any

from zdd_tui.errors import UsageError
from zdd_tui.text import visible

POLL_SECONDS = 2.0
DEFAULT_TAIL = 100
SINCE_TAIL = 10_000  # lines per host with --since and no -n: the window, not the whole history
EPOCH_FLOOR = 1_000_000_000  # a bare number below this (2001-09-09) is surely a duration without its unit

# Go's durations, as Docker reads them: one or more <number><unit>, e.g. 10m, 1h30m, 1.5h, 250ms.
_DURATION = re.compile(r"((?:\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h))+")
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
# RFC 3339 and its shorter forms Docker takes: a date, then optionally a time (minutes, seconds,
# a fraction of up to 9 digits) and a zone (Z or +hh:mm); no zone is this machine's local time.
_TIME = re.compile(r"(\d{4})-(\d{2})-(\d{2})"
                   r"(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?(Z|[+-]\d{2}:\d{2})?)?")
_EPOCH = re.compile(r"\d+(?:\.\d{1,9})?")
SINCE_FORMS = ("a duration back from now, like 10m, 1h30m, 90s or 1.5h (units h, m, s, ms); or a time, like "
               "2026-01-02T15:04:05Z, 2026-01-02T15:04:05.5+01:00, 2026-01-02T15:04 or 2026-01-02 (without a zone: "
               "this machine's local time); or epoch seconds, like 1767366245")


def register(sub, common):
    p = sub.add_parser("logs", parents=[common], help="the app container's logs, from one host or all (-f follows)",
                       description="The app container's logs from HOST, or from every host (each line prefixed "
                                   "with its host). -f keeps following them until Ctrl-C.")
    p.add_argument("host", metavar="HOST", nargs="?", default=None, help="a droplet's name (default: every host)")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new lines until Ctrl-C")
    p.add_argument("-n", "--tail", type=int, default=None, metavar="N",
                   help=f"how many of the last lines to show first, per host (default {DEFAULT_TAIL}; "
                        f"with --since, up to {SINCE_TAIL})")
    p.add_argument("--since", default=None, metavar="WHEN",
                   help="only lines written since WHEN: a duration back from now (10m, 1h30m) or a time "
                        "(2026-01-02T15:04:05Z, 2026-01-02T15:04 local, 2026-01-02)")
    p.set_defaults(func=run)


def parse_since(text: str, now: float | None = None) -> float:
    """`--since` as epoch seconds, in Docker's forms (SINCE_FORMS); UsageError saying what to
    write for anything else. A duration counts back from `now` (this machine's clock)."""
    now = time.time() if now is None else now
    value = text.strip()
    if _DURATION.fullmatch(value):
        seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(value))
        return max(0.0, now - seconds)
    m = _TIME.fullmatch(value)
    if m:
        year, month, day, hour, minute, second, fraction, zone = m.groups()
        try:
            tz = None
            if zone == "Z":
                tz = dt.UTC
            elif zone:
                sign = 1 if zone[0] == "+" else -1
                hh, mm = int(zone[1:3]), int(zone[4:6])
                if hh > 23 or mm > 59:
                    raise ValueError(f"zone {zone} out of range")
                tz = dt.timezone(sign * dt.timedelta(hours=hh, minutes=mm))
            when = dt.datetime(int(year), int(month), int(day), int(hour or 0), int(minute or 0), int(second or 0),
                               tzinfo=tz)
        except ValueError as exc:
            raise UsageError(f"--since {visible(text)}: not a valid time ({exc})", f"write {SINCE_FORMS}") from None
        return when.timestamp() + (float("0." + fraction) if fraction else 0.0)
    if _EPOCH.fullmatch(value):
        if float(value) < EPOCH_FLOOR:
            raise UsageError(f"--since {visible(text)}: a number alone is epoch seconds (this one is before 2001); "
                             "a duration needs its unit", f"write e.g. {value}m or {value}s, or {SINCE_FORMS}")
        return float(value)
    raise UsageError(f"--since {visible(text)}: neither a duration nor a time", f"write {SINCE_FORMS}")


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

    if args.tail is not None and args.tail < 1:
        raise UsageError(f"-n {args.tail}: expected a positive number of lines")
    since = parse_since(args.since) if args.since is not None else None
    first_tail = args.tail or (SINCE_TAIL if since is not None else DEFAULT_TAIL)
    window = args.tail or DEFAULT_TAIL  # what each poll reads while following
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
                lines = await project.logs(droplet, first_tail, since)
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
                    now = await project.logs(droplet, window)
                except Exception as exc:  # noqa: BLE001 - a host may come back: keep following
                    print(f"zdd-tui: {droplet.name}: cannot read the logs ({type(exc).__name__}); retrying",
                          file=sys.stderr)
                    continue
                fresh, gap = new_lines(lines, now)
                if gap and lines:
                    print(f"zdd-tui: {droplet.name}: lines may be missing here (more than {window} came "
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
