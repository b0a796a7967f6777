"""The headless listener: live lines for people, or JSON lines (`--json`) for machines (CI).

Lines for people are short and never rely on colour: phase words, health as words.
"""

from __future__ import annotations

import json
import sys
from typing import TextIO

from zdd_tui.rollout.events import (
    Event,
    HealthChanged,
    LogLine,
    Outcome,
    OutcomeStatus,
    PhaseChanged,
    Plan,
    Progress,
    RolloutFinished,
    RolloutPlanned,
    to_dict,
)


def _health_word(healthy: bool | None) -> str:
    return {True: "healthy", False: "unhealthy", None: "unknown"}[healthy]


def render_plan(plan: Plan) -> str:
    """The plan preview, in words."""
    lines = [f"Plan {plan.rollout_id}: {plan.action} {plan.to_tag}"]
    lines.append(f"  image: {plan.image_ref}")
    if plan.resumes:
        lines.append(f"  continues interrupted rollout {plan.resumes}")
    if not plan.hosts:
        lines.append(f"  nothing to do: every host already runs {plan.to_tag}")
    for i, batch in enumerate(plan.batches):
        hosts = ", ".join(f"{h.name} ({h.from_tag or 'nothing'} -> {plan.to_tag})" for h in batch)
        lines.append(f"  batch {i + 1}: {hosts}")
    if plan.unchanged:
        lines.append(f"  unchanged (already on {plan.to_tag}): {', '.join(plan.unchanged)}")
    lines.append(f"  batch size {plan.batch_size}; estimated {_dur(plan.estimated_seconds)} "
                 f"({plan.estimate_basis})")
    for note in plan.notes:
        lines.append(f"  note: {note}")
    return "\n".join(lines)


def render_outcome(outcome: Outcome) -> str:
    label = {
        OutcomeStatus.SUCCESS: "OK",
        OutcomeStatus.HALTED: "HALTED (restored)",
        OutcomeStatus.ERROR: "ERROR",
        OutcomeStatus.REFUSED: "REFUSED",
        OutcomeStatus.INTERRUPTED: "INTERRUPTED",
    }[outcome.status]
    lines = [f"{label}: {outcome.message}"]
    if outcome.failed_host:
        step = outcome.failed_step.value if outcome.failed_step else "?"
        lines.append(f"  failed: {outcome.failed_host} at {step}")
        if outcome.seen:
            lines.append(f"  seen: {outcome.seen}")
    lines.append(f"  took {_dur(outcome.duration_seconds)}")
    return "\n".join(lines)


def _dur(seconds: float) -> str:
    seconds = max(0.0, seconds)
    return f"{seconds:.0f}s" if seconds < 120 else f"{int(seconds // 60)}m{int(seconds % 60):02d}s"


class HeadlessRenderer:
    """A listener. `json_lines=True`: one JSON object per event (to_dict), flushed at once."""

    def __init__(self, stream: TextIO | None = None, *, json_lines: bool = False, show_progress: bool = False):
        self.stream = stream or sys.stdout
        self.json_lines = json_lines
        self.show_progress = show_progress
        self._t0: float | None = None
        self._last_pct: dict[str, int] = {}

    def __call__(self, event: Event) -> None:
        if self.json_lines:
            self._write(json.dumps(to_dict(event), default=str))
            return
        if self._t0 is None:
            self._t0 = event.at
        stamp = f"[{event.at - self._t0:6.1f}s]"
        if isinstance(event, RolloutPlanned):
            self._write(render_plan(event.plan))
        elif isinstance(event, PhaseChanged):
            detail = f": {event.detail}" if event.detail else ""
            self._write(f"{stamp} {event.host:<12} {event.phase.words}{detail}")
        elif isinstance(event, HealthChanged):
            who = "LB sees" if event.view == "lb" else "direct probe"
            detail = f" ({event.detail})" if event.detail else ""
            self._write(f"{stamp} {event.host:<12} {who}: {_health_word(event.healthy)}{detail}")
        elif isinstance(event, LogLine):
            level = "" if event.level == "info" else f"{event.level.upper()}: "
            self._write(f"{stamp} {(event.host or '-'):<12} {level}{event.line}")
        elif isinstance(event, Progress):
            if self.show_progress:
                pct = int(event.overall * 100)
                if pct // 10 != self._last_pct.get("", -1) // 10:
                    self._last_pct[""] = pct
                    self._write(f"{stamp} overall {pct}%")
        elif isinstance(event, RolloutFinished):
            self._write(render_outcome(event.outcome))

    def _write(self, line: str) -> None:
        try:
            self.stream.write(line + "\n")
            self.stream.flush()
        except (BrokenPipeError, ValueError):
            pass  # a closed pipe (| head) must not break the rollout

