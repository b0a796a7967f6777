"""The hosts' own record of rollouts: the deploy lock, the journal, an interrupted rollout."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from zdd_tui.rollout.interfaces import HostRuntime
from zdd_tui.rollout.journal import (
    RanVersion,
    RolloutRecord,
    Skipped,
    read_records,
    summarize,
    unfinished,
    versions_that_ran,
)
from zdd_tui.rollout.lock import LOCK_FILE, LockInfo, read_locks

if TYPE_CHECKING:
    from zdd_tui.cloud.models import Droplet
    from zdd_tui.project.open import Project


@dataclass
class RolloutState:
    locks: dict[str, LockInfo | None]
    history: list[RolloutRecord]  # newest first
    versions: list[RanVersion]  # that actually ran, newest first
    interrupted: RolloutRecord | None  # started, never finished, and nobody is running it
    running: RolloutRecord | None  # the rollout whose live holder has the lock
    unreadable: dict[str, str] = field(default_factory=dict)  # host -> why its journal could not be read
    skipped: list[Skipped] = field(default_factory=list)  # journal lines left out (host, line, why)

    @property
    def lock(self) -> LockInfo | None:
        for info in self.locks.values():
            if info is not None:
                return info
        return None

    def lines(self) -> list[str]:
        """For `zdd-tui status`: the lock and any interrupted rollout, in words."""
        out: list[str] = []
        lock = self.lock
        if lock is None:
            out.append("deploy lock: free")
        else:
            hosts = [h for h, i in self.locks.items() if i is not None]
            out.append(f"deploy lock: held on {', '.join(hosts)}: {lock.describe()}")
        r = self.interrupted
        if r is not None:
            out.append(f"INTERRUPTED rollout {r.rollout_id}: {r.action} {r.to_tag} by {r.operator} "
                       f"(never finished; the process stopped)")
            for h in r.hosts:
                out.append(f"  {h}: {r.host_state(h)}")
            out.append(f"  next: 'zdd-tui deploy --tag {r.to_tag}{' --break-lock' if lock else ''}' resumes it; "
                       f"'zdd-tui rollback <tag>{' --break-lock' if lock else ''}' rolls back")
        elif self.running is not None:
            out.append(f"rollout {self.running.rollout_id} running: {self.running.action} {self.running.to_tag}")
        if self.history:
            last = next((r for r in self.history if r.finished), None)
            if last is not None:
                out.append(f"last rollout: {last.rollout_id} {last.action} {last.to_tag}: {last.status}")
        for h, why in self.unreadable.items():
            out.append(f"journal on {h} unreadable: {why}")
        if self.skipped:
            out.append(f"journal: {len(self.skipped)} unusable line(s) skipped:")
            out += [f"  {line}" for line in self.skipped_lines()]
        return out

    def skipped_lines(self, most: int = 5) -> list[str]:
        """The journal lines left out, in words (the first `most`, then how many more)."""
        out = [s.text() for s in self.skipped[:most]]
        if len(self.skipped) > most:
            out.append(f"... and {len(self.skipped) - most} more line(s)")
        return out

    def to_dict(self) -> dict[str, Any]:
        def rec(r: RolloutRecord | None) -> dict[str, Any] | None:
            if r is None:
                return None
            return {"rollout_id": r.rollout_id, "action": r.action, "to_tag": r.to_tag, "operator": r.operator,
                    "started": r.started, "ended": r.ended, "status": r.status, "message": r.message,
                    "hosts": {h: r.host_state(h) for h in r.hosts}}

        lock = self.lock
        return {
            "lock": None if lock is None else {**lock.__dict__, "stale": lock.stale(),
                                                "hosts": [h for h, i in self.locks.items() if i]},
            "interrupted": rec(self.interrupted),
            "running": rec(self.running),
            "last": rec(next((r for r in self.history if r.finished), None)),
            "versions": [v.__dict__ | {"hosts": list(v.hosts)} for v in self.versions],
            "unreadable": self.unreadable,
            "skipped": [{"host": s.host, "line": s.line, "why": s.why} for s in self.skipped],
        }


async def state_of(runtimes: Mapping[str, HostRuntime]) -> RolloutState:
    locks = await read_locks(runtimes)
    records, unreadable, skipped = await read_records(runtimes)
    rollouts = summarize(records)
    live_ids = {i.rollout_id for i in locks.values() if i is not None and i.stale() is not True}
    open_ = unfinished(rollouts)
    running = next((r for r in reversed(open_) if r.rollout_id in live_ids), None)
    interrupted = next((r for r in reversed(open_) if r.rollout_id not in live_ids), None)
    return RolloutState(locks=locks, history=list(reversed(rollouts)), versions=versions_that_ran(rollouts),
                        interrupted=interrupted, running=running, unreadable=unreadable, skipped=skipped)


@dataclass(frozen=True)
class RolloutSeen:
    """A rollout seen on the hosts (their lock and journal), whoever started it."""

    holder: str  # who holds the lock, e.g. "ci@runner-7" or "console@laptop"
    action: str  # deploy | rollback | resume
    to_tag: str
    started: str = ""  # when, as the lock says it
    phases: dict[str, str] = field(default_factory=dict)  # host -> phase words (from the journal)
    ours: bool = False  # started by the caller (its own rollout id)


async def rollout_seen(project: Project, droplets: list[Droplet], own_id: str | None) -> RolloutSeen | None:
    """The deploy lock, read from the first host (a rollout locks every host or none); when
    someone else holds it, the journal says where each host is. No API request."""
    if not droplets:
        return None
    text = await project.runtime(droplets[0]).state_read(LOCK_FILE)
    if text is None:
        return None
    info = LockInfo.parse(text)
    ours = own_id is not None and info.rollout_id == own_id
    phases: dict[str, str] = {}
    if not ours:
        state = await state_of(await project.host_runtimes(droplets))
        rec = state.running or state.interrupted
        if rec is not None:
            for host, (phase, _detail) in rec.last_step.items():
                phases[host] = phase
            for host, res in rec.results.items():
                phases[host] = res.outcome
    return RolloutSeen(holder=info.holder, action=info.action, to_tag=info.version, phases=phases, ours=ours)
