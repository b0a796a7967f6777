"""The setup wizard's vocabulary: a step's preview, and the events a run emits
(zdd_tui.events.Event; bootstrap also emits the neutral HostReport). The console and the
headless renderer both listen to them."""

from __future__ import annotations

from dataclasses import dataclass

from zdd_tui.events import Event
from zdd_tui.text import show_fields


@dataclass(frozen=True)
class Preview:
    """What a step will create and what that costs per month, before it does anything."""

    step: str
    title: str
    creates: tuple[str, ...]  # human lines, one per resource to be created ("" when nothing)
    existing: tuple[str, ...] = ()  # what was found and will be reused
    monthly_usd: float = 0.0  # the added monthly cost of what it creates
    cost_detail: str = ""  # how the cost was computed, in words
    notes: tuple[str, ...] = ()
    applies: bool = True  # False: the step does not apply here (e.g. SSH bootstrap in the sandbox)

    def __post_init__(self) -> None:
        show_fields(self)  # names found in the account

    @property
    def nothing_to_do(self) -> bool:
        return not self.creates


@dataclass(frozen=True)
class PreviewShown(Event, kind="preview"):
    preview: Preview

    def text(self) -> str:
        p = self.preview
        lines = [f"\n== {p.title} =="]
        lines += [f"  note: {n}" for n in p.notes]
        if not p.applies:
            return "\n".join(lines)
        lines += [f"  found: {e}" for e in p.existing]
        lines += [f"  will create: {c}" for c in p.creates]
        if p.creates:
            lines.append(f"  cost: +${p.monthly_usd:.2f}/month ({p.cost_detail})")
        elif p.existing:
            lines.append("  nothing to create")
        return "\n".join(lines)


@dataclass(frozen=True)
class StepStarted(Event):
    step: str
    title: str

    def text(self) -> str:
        return f"  applying: {self.title}"


@dataclass(frozen=True)
class StepProgress(Event):
    step: str
    message: str
    fraction: float | None = None  # 0..1 when known

    def text(self) -> str:
        frac = f" [{self.fraction * 100:3.0f}%]" if self.fraction is not None else ""
        return f"  ..{frac} {self.message}"


@dataclass(frozen=True)
class StepDone(Event):
    step: str
    status: str  # created | exists | not-applicable | skipped
    detail: str
    created: tuple[str, ...] = ()

    def text(self) -> str:
        return f"  {self.status}: {self.detail}"


@dataclass(frozen=True)
class StepError(Event, kind="step-failed"):
    """A step failed (the run then raises). Its JSON kind stays "step-failed"."""

    step: str
    message: str
    hint: str | None = None

    def text(self) -> str:
        return f"  FAILED: {self.message}"
