"""The deploy lock as `zdd-tui lock` shows it (holder, since, version, stale or not, per host)
and releases it on purpose. Nothing here prints.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from zdd_tui.errors import RefusedError
from zdd_tui.project.versions import ago
from zdd_tui.rollout.lock import LOCK_FILE, LockHeld, LockInfo, read_locks

if TYPE_CHECKING:
    from zdd_tui.project.open import Project


@dataclass(frozen=True)
class LockStatus:
    locks: dict[str, LockInfo | None]  # host -> its lock, None where it is free

    @property
    def held(self) -> dict[str, LockInfo]:
        return {h: i for h, i in self.locks.items() if i is not None}

    def holders(self) -> dict[str, LockInfo]:
        """rollout id -> its lock (several when hosts disagree, e.g. after a half-broken lock)."""
        out: dict[str, LockInfo] = {}
        for info in self.held.values():
            out.setdefault(info.rollout_id, info)
        return out

    def hosts_of(self, rollout_id: str) -> list[str]:
        return [h for h, i in self.held.items() if i.rollout_id == rollout_id]

    def to_dict(self) -> dict[str, Any]:
        def one(info: LockInfo) -> dict[str, Any]:
            return {"holder": info.holder, "pid": info.pid, "since": info.started, "version": info.version,
                    "action": info.action, "rollout_id": info.rollout_id, "stale": info.stale(),
                    "hosts": self.hosts_of(info.rollout_id)}

        return {"held": bool(self.held), "locks": [one(i) for i in self.holders().values()],
                "free_on": [h for h, i in self.locks.items() if i is None]}

    def lines(self) -> list[str]:
        if not self.held:
            return [f"deploy lock: free on every host ({', '.join(self.locks) or 'no hosts'})"]
        out = []
        for rid, info in self.holders().items():
            stale = {True: "yes: its process is not running on this machine",
                     False: "no: its process is running on this machine",
                     None: f"cannot tell from here (held from {info.machine})"}[info.stale()]
            out += [f"deploy lock held on {', '.join(self.hosts_of(rid))}",
                    f"  holder:  {info.holder} (pid {info.pid})",
                    f"  since:   {_when(info.started)}",
                    f"  version: {info.action} of {info.version}, rollout {rid}",
                    f"  stale:   {stale}"]
        free = [h for h, i in self.locks.items() if i is None]
        if free:
            out.append(f"free on: {', '.join(free)}")
        return out


def _when(epoch: float) -> str:
    if not epoch:
        return "?"
    try:
        return (time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(epoch))
                + f" ({ago(time.time() - epoch)} ago)")
    except (OverflowError, ValueError, OSError):
        return "?"


async def lock_status(project: Project) -> LockStatus:
    return LockStatus(await read_locks(await project.host_runtimes()))


async def release_lock(project: Project, seen: LockStatus) -> dict[str, LockInfo]:
    """Remove the deploy lock that `seen` showed (and only that one: a lock taken since by another
    rollout stays), from each host where it still is. Refuses (LockHeld) while its holder runs on
    this machine, and (RefusedError) when no lock is held. Returns host -> the lock removed."""
    if not seen.held:
        raise RefusedError("the deploy lock is not held on any host: nothing to release", None)
    for host, info in seen.held.items():
        if info.stale() is False:
            raise LockHeld(info, host)
    runtimes = await project.host_runtimes()
    wanted = {h: i.rollout_id for h, i in seen.held.items()}
    removed: dict[str, LockInfo] = {}
    for host, now in (await read_locks(runtimes)).items():
        if now is None or host not in wanted or now.rollout_id != wanted[host]:
            continue
        await runtimes[host].state_remove(LOCK_FILE)
        removed[host] = now
    return removed
