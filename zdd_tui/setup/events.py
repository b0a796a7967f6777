"""Progress events of the setup wizard (plain dataclasses): the console and the headless
renderer both listen to them. `to_dict` gives the JSON-lines form."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable


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

    @property
    def nothing_to_do(self) -> bool:
        return not self.creates


@dataclass(frozen=True)
class StepStarted:
    step: str
    title: str
    kind: str = "step-started"


@dataclass(frozen=True)
class StepProgress:
    step: str
    message: str
    fraction: float | None = None  # 0..1 when known
    kind: str = "step-progress"


@dataclass(frozen=True)
class HostReport:
    """The bootstrap result of one host."""

    step: str
    host: str
    address: str
    ok: bool
    checks: dict[str, str] = field(default_factory=dict)  # check -> outcome in words
    kind: str = "host-report"


@dataclass(frozen=True)
class StepDone:
    step: str
    status: str  # created | exists | not-applicable | skipped
    detail: str
    created: tuple[str, ...] = ()
    kind: str = "step-done"


@dataclass(frozen=True)
class StepFailed:
    step: str
    message: str
    hint: str | None = None
    kind: str = "step-failed"


@dataclass(frozen=True)
class PreviewShown:
    preview: Preview
    kind: str = "preview"


SetupEvent = Any
Listener = Callable[[SetupEvent], Any]


def to_dict(event: SetupEvent) -> dict[str, Any]:
    d = dataclasses.asdict(event)
    kind = d.pop("kind", type(event).__name__)
    return {"kind": kind, **d}
