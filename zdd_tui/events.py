"""The base of every event an operation emits (rollout, setup, build), and the events that more
than one layer emits (a host's log line, a host's bootstrap report).

An event is a frozen dataclass. Its `kind` names it in JSON lines: derived from the class name
(StepDone -> "step-done") unless the class gives one (`class PhaseChanged(Event, kind="phase")`).
`to_dict()` is its JSON form, `text()` its form for people (one line; a plan or an outcome is
a block). `at` is the emitter's clock when it emitted the event: the rollout engine stamps its
events; emitters without a clock (setup, build) leave it None.

Text in an event often comes from outside (a host's output, a failure's detail, the Docker
engine's words): every text field is made visible (zdd_tui.text) when the event is made, so no
listener, console or headless, ever passes an escape sequence on to a terminal.

Each vocabulary lives with its emitter (rollout/events.py, setup/events.py, images/events.py);
the adapters (hosts/) import only this module.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any, ClassVar

from zdd_tui.text import show_fields


@dataclass(frozen=True)
class Event:
    at: float | None = field(default=None, kw_only=True)
    kind: ClassVar[str] = "event"

    # Fields that hold one line: a newline in them is shown (^J), not kept.
    one_line: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self) -> None:
        show_fields(self, one_line=self.one_line)

    def __init_subclass__(cls, kind: str = "", **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.kind = kind or re.sub(r"(?<!^)(?=[A-Z])", "-", cls.__name__).lower()

    def to_dict(self) -> dict[str, Any]:
        """{"kind": ..., "at": ..., fields...}; `at` only when the emitter stamped it."""
        out: dict[str, Any] = {"kind": self.kind}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "at" and value is None:
                continue
            out[f.name] = _plain(value)
        return out

    def text(self) -> str:
        return self.kind


Listener = Callable[[Event], Any]


def _plain(v: Any) -> Any:
    if isinstance(v, enum.Enum):
        return v.value
    if is_dataclass(v) and not isinstance(v, type):
        to_dict = getattr(v, "to_dict", None)
        if callable(to_dict):  # a value with derived fields (traffic rates)
            return to_dict()
        return {f.name: _plain(getattr(v, f.name)) for f in fields(v)}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    return v


@dataclass(frozen=True)
class LogLine(Event, kind="log"):
    """A line about a host (its command output, a step of the engine), or about no host."""

    host: str | None
    line: str
    level: str = "info"  # info | warning | error
    one_line: ClassVar[tuple[str, ...]] = ("host", "line", "level")

    def text(self) -> str:
        level = "" if self.level == "info" else f"{self.level.upper()}: "
        return f"{(self.host or '-'):<12} {level}{self.line}"


@dataclass(frozen=True)
class HostReport(Event):
    """The bootstrap result of one host: each check and its outcome in words."""

    step: str
    host: str
    address: str
    ok: bool
    checks: dict[str, str] = field(default_factory=dict)  # check -> outcome in words

    def text(self) -> str:
        lines = [f"  host {self.host} ({self.address}): {'ready' if self.ok else 'NOT READY'}"]
        lines += [f"    {k}: {v}" for k, v in self.checks.items()]
        return "\n".join(lines)
