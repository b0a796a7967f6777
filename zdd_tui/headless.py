"""The headless listener of every operation (rollout, setup, build): lines for people, or JSON
lines (`--json`) for machines (CI).

Lines for people are each event's `text()`, never relying on colour; the rollout's timed lines
get the seconds since the rollout began. Some events are left out or thinned so logs stay short:
a setup step's start (its preview named it), per-host progress (unless asked for: then the
overall figure in tenths), a pushed layer's byte counts (status changes and whole quarters
only, in both forms), the per-second traffic samples (JSON lines only) and the canary's soak
(every ~5 s; its verdict always).

In GitHub Actions (GITHUB_ACTIONS=true), in both forms, each host's lines are folded in groups,
no line is taken for a workflow command, and a finished rollout's summary table goes to
$GITHUB_STEP_SUMMARY (zdd_tui.actions).
"""

from __future__ import annotations

import json
import sys
from typing import TextIO

from zdd_tui.actions import ActionsOutput, host_of
from zdd_tui.events import Event
from zdd_tui.images.events import LayerProgress
from zdd_tui.rollout.events import CanaryState, CanaryUpdate, Progress, RolloutFinished, RolloutPlanned, TrafficSampled
from zdd_tui.setup.events import StepStarted
from zdd_tui.text import visible

SOAK_EVERY = 5.0  # seconds between two lines of the canary's soak


class HeadlessRenderer:
    """A listener. `json_lines=True`: one JSON object per event (Event.to_dict), flushed at once."""

    def __init__(self, stream: TextIO | None = None, *, json_lines: bool = False, show_progress: bool = False):
        self.stream = stream or sys.stdout
        self.json_lines = json_lines
        self.show_progress = show_progress
        self._t0: float | None = None
        self._overall_tenth = -1
        self._layer_status: dict[tuple[str, str], str] = {}
        self._layer_quarter: dict[tuple[str, str], int] = {}
        self._soak_shown: float | None = None  # `at` of the last soak line shown
        self.actions = ActionsOutput.from_env()

    def __call__(self, event: Event) -> None:
        if isinstance(event, LayerProgress) and not self._layer_news(event):
            return
        if self.actions is not None:
            warning = self.actions.note(event)
            if warning:  # on stderr: stdout may be JSON lines
                print(f"zdd-tui: warning: {warning}", file=sys.stderr)
        if self.json_lines:
            self._write(json.dumps(event.to_dict(), default=str), host_of(event))
            return
        if event.at is not None and self._t0 is None:
            self._t0 = event.at
        if isinstance(event, (StepStarted, TrafficSampled)):
            return
        if isinstance(event, CanaryUpdate) and not self._soak_news(event):
            return
        if isinstance(event, Progress):
            line = self._overall(event)
            if line is None:
                return
        else:
            line = event.text()
        # Timed lines carry the seconds since the start; the plan and the outcome are blocks.
        if event.at is not None and not isinstance(event, (RolloutPlanned, RolloutFinished)):
            line = f"[{event.at - (self._t0 or 0.0):6.1f}s] {line}"
        self._write(line, host_of(event))

    def _overall(self, event: Progress) -> str | None:
        if not self.show_progress:
            return None
        pct = int(event.overall * 100)
        if pct // 10 == self._overall_tenth:
            return None
        self._overall_tenth = pct // 10
        return f"overall {pct}%"

    def _soak_news(self, ev: CanaryUpdate) -> bool:
        """The verdict, or a soak line at least SOAK_EVERY seconds after the last one shown."""
        if ev.report.state is not CanaryState.SOAKING or ev.at is None:
            return True
        if self._soak_shown is not None and ev.at - self._soak_shown < SOAK_EVERY - 0.01:
            return False
        self._soak_shown = ev.at
        return True

    def _layer_news(self, ev: LayerProgress) -> bool:
        """A new status for the layer, or another whole quarter of its bytes."""
        key = (ev.tag, ev.layer)
        if self._layer_status.get(key) == ev.status:
            if not (ev.current is not None and ev.total):
                return False
            quarter = int(4 * ev.current / ev.total)
            if quarter == self._layer_quarter.get(key):
                return False
            self._layer_quarter[key] = quarter
        self._layer_status[key] = ev.status
        return True

    def _write(self, line: str, host: str | None = None) -> None:
        # Events show their text safely already; this is the last guard before the terminal.
        line = visible(line, newlines=True)
        if self.actions is not None:
            line = "\n".join(self.actions.frame(line, host))
        try:
            self.stream.write(line + "\n")
            self.stream.flush()
        except (BrokenPipeError, ValueError):
            pass  # a closed pipe (| head) must not break the operation
