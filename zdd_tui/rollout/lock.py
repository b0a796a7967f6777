"""The deploy lock: one state file on every host, created atomically (`state_create`).

Hosts are locked in name order, so two operators racing meet on the first host and exactly one
wins; the loser removes what it created and is refused with the holder's details. A lock left by
a killed process stays until someone breaks it on purpose (`--break-lock`).
"""

from __future__ import annotations

import getpass
import json
import math
import os
import socket
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass

from zdd_tui.errors import RefusedError
from zdd_tui.rollout.interfaces import HostRuntime
from zdd_tui.text import visible

LOCK_FILE = "deploy.lock"


def operator_name() -> str:
    try:
        user = getpass.getuser()
    except Exception:  # noqa: BLE001 - no passwd entry (some containers); the error type varies by Python version
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


@dataclass(frozen=True)
class LockInfo:
    holder: str  # user@host
    pid: int
    started: float  # epoch seconds
    version: str  # the tag being deployed
    rollout_id: str
    action: str = "deploy"

    @classmethod
    def mine(cls, rollout_id: str, version: str, action: str = "deploy") -> LockInfo:
        return cls(holder=operator_name(), pid=os.getpid(), started=time.time(), version=version,
                   rollout_id=rollout_id, action=action)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def parse(cls, text: str) -> LockInfo:
        """The lock file's content; its text made visible (it is the hosts' word). A file that is
        not such a lock still locks, described as unreadable and why: better refuse than deploy
        twice, and never fail the reader."""
        try:
            d = json.loads(text)
        except ValueError:
            return cls.unreadable("not valid JSON")
        why = _check_lock(d)
        if why is not None:
            return cls.unreadable(why)
        return cls(holder=visible(d["holder"]), pid=d["pid"], started=float(d["started"]),
                   version=visible(d["version"]), rollout_id=visible(d["rollout_id"]),
                   action=visible(d.get("action", "deploy")))

    @classmethod
    def unreadable(cls, why: str) -> LockInfo:
        return cls(holder=f"unknown (unreadable lock file: {why})", pid=0, started=0.0, version="?",
                   rollout_id="?", action="?")

    @property
    def machine(self) -> str:
        return self.holder.rpartition("@")[2]

    def stale(self) -> bool | None:
        """True: the holder process is gone (same machine, pid not alive). None: cannot tell."""
        if self.pid <= 0:
            return None
        if self.machine != socket.gethostname():
            return None
        return not _pid_alive(self.pid)

    def describe(self) -> str:
        try:
            when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(self.started)) if self.started else "?"
        except (OverflowError, ValueError, OSError):  # a time no calendar has: say so, never fail
            when = "?"
        s = (f"{self.action} of {self.version} by {self.holder} (pid {self.pid}), since {when}, "
             f"rollout {self.rollout_id}")
        if self.stale():
            s += " [stale: that process is not running]"
        return s


LATEST_TIME = 253402300799  # 9999-12-31T23:59:59Z: the last second gmtime and strftime can show


def _check_lock(d: object) -> str | None:
    """Why a parsed lock file is not a lock, or None."""
    if not isinstance(d, dict):
        return "not a JSON object"
    for key in ("holder", "version", "rollout_id"):
        if not isinstance(d.get(key), str):
            return f"'{key}' missing or not text"
    if not isinstance(d.get("action", "deploy"), str):
        return "'action' not text"
    pid = d.get("pid")
    if not isinstance(pid, int) or isinstance(pid, bool) or not 0 <= pid < 2**31:
        return "'pid' missing or not a process id"
    started = d.get("started")
    if (not isinstance(started, (int, float)) or isinstance(started, bool) or not math.isfinite(started)
            or not 0 <= started <= LATEST_TIME):
        return "'started' missing or not a time"
    return None


def _pid_alive(pid: int) -> bool:
    # kill -0 says a zombie is alive; its state in /proc says it is not running.
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rpartition(")")[2].split()[0]
        return state not in ("Z", "X")
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(pid, 0)
            return True
        except ProcessLookupError:
            return False
        except PermissionError:
            return True


class LockHeld(RefusedError):
    def __init__(self, info: LockInfo, host: str):
        stale = info.stale()
        hint = ("the holder is gone: inspect with 'zdd-tui status', then break it on purpose with "
                "--break-lock" if stale else
                "wait for it to finish; if the holder is gone, break it on purpose with --break-lock")
        super().__init__(f"deploy lock held on {host}: {info.describe()}", hint)
        self.info = info
        self.host = host


async def read_locks(runtimes: Mapping[str, HostRuntime]) -> dict[str, LockInfo | None]:
    out: dict[str, LockInfo | None] = {}
    for name in sorted(runtimes):
        text = await runtimes[name].state_read(LOCK_FILE)
        out[name] = LockInfo.parse(text) if text is not None else None
    return out


async def acquire(runtimes: Mapping[str, HostRuntime], info: LockInfo, *, break_lock: bool = False) -> None:
    """Lock every host or none. LockHeld names the holder. break_lock removes foreign locks first,
    but never one whose holder is demonstrably still running."""
    if break_lock:
        for name, held in (await read_locks(runtimes)).items():
            if held is None or held.rollout_id == info.rollout_id:
                continue
            if held.stale() is False:
                raise LockHeld(held, name)  # alive on this machine: breaking it would race it
            await runtimes[name].state_remove(LOCK_FILE)
    taken: list[str] = []
    content = info.to_json()
    for name in sorted(runtimes):
        rt = runtimes[name]
        if await rt.state_create(LOCK_FILE, content):
            taken.append(name)
            continue
        text = await rt.state_read(LOCK_FILE)
        for t in taken:
            await _remove_if_mine(runtimes[t], info.rollout_id)
        held = LockInfo.parse(text) if text is not None else LockInfo(
            holder="unknown (lock vanished while reading)", pid=0, started=0.0, version="?", rollout_id="?")
        raise LockHeld(held, name)


async def _remove_if_mine(rt: HostRuntime, rollout_id: str) -> None:
    text = await rt.state_read(LOCK_FILE)
    if text is not None and LockInfo.parse(text).rollout_id == rollout_id:
        await rt.state_remove(LOCK_FILE)


async def release(runtimes: Mapping[str, HostRuntime], rollout_id: str) -> list[str]:
    """Remove our lock everywhere; returns hosts where that failed (reported, not raised)."""
    failed = []
    for name in sorted(runtimes):
        try:
            await _remove_if_mine(runtimes[name], rollout_id)
        except Exception:  # noqa: BLE001 - a host gone now must not hide the rollout's outcome
            failed.append(name)
    return failed
