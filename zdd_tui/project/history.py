"""The rollouts that ran on the fleet, from the hosts' journals (every host's records merged by
rollout id), newest first: what `zdd-tui history` shows. Nothing here prints.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from zdd_tui.project.versions import ago, duration
from zdd_tui.rollout.journal import RolloutRecord

if TYPE_CHECKING:
    from zdd_tui.project.open import Project
    from zdd_tui.project.state import RolloutState


@dataclass(frozen=True)
class Rollout:
    """One rollout, as the journals tell it."""

    rollout_id: str
    action: str
    to_tag: str
    operator: str
    started: float | None  # epoch seconds
    ended: float | None
    outcome: str  # success | halted | error | refused | interrupted | running | unfinished
    message: str
    hosts: tuple[str, ...]
    from_tags: dict[str, str | None] = field(default_factory=dict)
    results: dict[str, str] = field(default_factory=dict)  # host -> how it ended, in words

    @property
    def seconds(self) -> float | None:
        if self.started is None or self.ended is None:
            return None
        return max(0.0, self.ended - self.started)

    def to_dict(self) -> dict[str, Any]:
        return {"rollout_id": self.rollout_id, "action": self.action, "to_tag": self.to_tag,
                "operator": self.operator, "started": self.started, "ended": self.ended,
                "duration_seconds": self.seconds, "outcome": self.outcome, "message": self.message,
                "hosts": list(self.hosts), "from": dict(self.from_tags), "results": dict(self.results)}

    def line(self, now: float) -> str:
        when = time.strftime("%Y-%m-%d %H:%M", time.gmtime(self.started)) if self.started else "?"
        took = duration(self.seconds) if self.seconds is not None else "-"
        since = f" ({ago(now - self.started)} ago)" if self.started else ""
        return (f"{when}{since}  {self.rollout_id}  {self.action} {self.to_tag} to {', '.join(self.hosts) or '-'}"
                f"  by {self.operator}  {self.outcome}  took {took}")


def _outcome(r: RolloutRecord, state: RolloutState) -> str:
    if r.status is not None:
        return r.status
    if state.running is not None and state.running.rollout_id == r.rollout_id:
        return "running"
    if state.interrupted is not None and state.interrupted.rollout_id == r.rollout_id:
        return "interrupted"
    return "unfinished"


def rollouts(state: RolloutState, limit: int | None = None) -> list[Rollout]:
    """The journal's rollouts, newest first (at most `limit`)."""
    out = []
    for r in state.history[:limit] if limit else state.history:
        out.append(Rollout(
            rollout_id=r.rollout_id, action=r.action, to_tag=r.to_tag, operator=r.operator, started=r.started,
            ended=r.ended, outcome=_outcome(r, state), message=r.message, hosts=tuple(r.hosts),
            from_tags=dict(r.from_tags), results={h: r.host_state(h) for h in r.hosts}))
    return out


async def history(project: Project, limit: int | None = None) -> tuple[list[Rollout], RolloutState]:
    """The rollouts (newest first) and the state they were read from (its `unreadable` and
    `skipped` say what could not be read)."""
    state = await project.rollout_state()
    return rollouts(state, limit), state
