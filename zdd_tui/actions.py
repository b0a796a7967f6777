"""GitHub Actions output for the headless commands (when GITHUB_ACTIONS=true).

- Each host's lines are folded in a `::group::<host>` ... `::endgroup::` block. Actions groups
  cannot nest or interleave, so a group lasts while consecutive lines are about the same host: a
  line about another host, or about no host (the plan, the outcome, a hook), ends it, and the
  next host line opens a new one. With one host per batch that is one group per host (plus the
  short pull blocks at the start); hosts of one batch, whose lines interleave, get several short
  groups each, every line still under its own host's name, and the output stays live.
- Output is never taken for a workflow command: a line that Actions would read as one (`::` or
  the older `##[` after leading whitespace) is shown with a `\\` in front. The runner reads
  commands on stdout and stderr alike; `escape_lines` is for both.
- When a rollout finishes, a Markdown table of it (hosts, from/to tag, times, result) is appended
  to $GITHUB_STEP_SUMMARY, every cell escaped (`|`, newlines, Markdown and HTML characters), with
  the canary's verdict and the failed requests the hosts' proxies counted (local-swap).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from zdd_tui.events import Event
from zdd_tui.rollout.events import (
    CanaryReport,
    Phase,
    PhaseChanged,
    Plan,
    RolloutFinished,
    RolloutPlanned,
    TrafficSampled,
)
from zdd_tui.traffic import Rates

# What the runner takes for a command: `::name::` (and the legacy `##[name]`) once leading
# whitespace is trimmed.
_COMMAND = re.compile(r"\s*(::|##\[)")
_ENDS = {Phase.DONE: "done", Phase.FAILED: "failed", Phase.RESTORED: "restored", Phase.SKIPPED: "not touched"}
_BEFORE_START = (Phase.PENDING, Phase.PULLING, Phase.SKIPPED)
_MARKDOWN = re.compile(r"([\\`*_\[\]|~#])")


def in_actions(env: Mapping[str, str] | None = None) -> bool:
    return (os.environ if env is None else env).get("GITHUB_ACTIONS") == "true"


def escape_line(line: str) -> str:
    """One line of output, never a workflow command."""
    return "\\" + line if _COMMAND.match(line) else line


def escape_lines(text: str) -> str:
    return "\n".join(escape_line(line) for line in text.split("\n"))


def command_data(text: str) -> str:
    """A workflow command's data (a group's title): the runner's own escapes for %, CR and LF."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def cell(text: object) -> str:
    """A Markdown table cell: one line, no column break, no markup or HTML from the text."""
    s = " ".join(str(text).split())
    s = s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MARKDOWN.sub(r"\\\1", s) or " "


@dataclass
class _HostRow:
    name: str
    from_tag: str | None
    started_wall: float | None = None
    started_at: float | None = None
    ended_wall: float | None = None
    ended_at: float | None = None
    result: str = "not reached"


def _utc(epoch: float | None) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(epoch)) if epoch is not None else "-"


def _took(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = max(0.0, seconds)
    return f"{seconds:.0f}s" if seconds < 120 else f"{int(seconds // 60)}m{int(seconds % 60):02d}s"


class ActionsOutput:
    """Framing of the headless lines and the step summary of a rollout."""

    def __init__(self, summary_path: str | None = None, *, wallclock: Callable[[], float] = time.time):
        self.summary_path = summary_path or None
        self.wallclock = wallclock
        self._group: str | None = None
        self._plan: Plan | None = None
        self._rows: dict[str, _HostRow] = {}
        self._began: float | None = None
        self._errors: int | None = None  # 5xx counted by the proxies (None: no reading)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ActionsOutput | None:
        env = os.environ if env is None else env
        if not in_actions(env):
            return None
        return cls(env.get("GITHUB_STEP_SUMMARY"))

    # -- framing -------------------------------------------------------------------------------
    def frame(self, text: str, host: str | None) -> list[str]:
        """The lines to write for `text` (one line or a block) about `host` (None: no host)."""
        out: list[str] = []
        if self._group is not None and self._group != host:
            out.append("::endgroup::")
            self._group = None
        if host is not None and self._group is None:
            out.append(f"::group::{command_data(host)}")
            self._group = host
        out += [escape_line(line) for line in text.split("\n")]
        return out

    def close(self) -> list[str]:
        if self._group is None:
            return []
        self._group = None
        return ["::endgroup::"]

    # -- the summary ---------------------------------------------------------------------------
    def note(self, event: Event) -> str | None:
        """Follow a rollout's events; when it finishes, append its summary to the summary file.
        Returns a warning when that file could not be written."""
        if isinstance(event, RolloutPlanned):
            self._plan = event.plan
            self._began = self.wallclock()
            self._rows = {h.name: _HostRow(h.name, h.from_tag) for h in event.plan.hosts}
            self._errors = None
        elif isinstance(event, TrafficSampled):
            known = [h.rates.errors for h in event.hosts if h.rates is not None]
            if known:
                self._errors = (self._errors or 0) + sum(known)
        elif isinstance(event, PhaseChanged):
            row = self._rows.setdefault(event.host, _HostRow(event.host, None))
            if row.started_wall is None and event.phase not in _BEFORE_START:
                row.started_wall, row.started_at = self.wallclock(), event.at
            if event.phase in _ENDS:
                row.ended_wall, row.ended_at = self.wallclock(), event.at
                row.result = _ENDS[event.phase]
        elif isinstance(event, RolloutFinished) and self.summary_path:
            try:
                with open(self.summary_path, "a", encoding="utf-8") as f:
                    f.write(self.summary(event))
            except OSError as exc:
                return f"could not write the step summary to $GITHUB_STEP_SUMMARY: {exc.strerror or exc}"
        return None

    def summary(self, finished: RolloutFinished) -> str:
        o = finished.outcome
        plan = self._plan
        action = plan.action if plan is not None else "rollout"
        lines = [f"### zdd-tui {cell(action)} {cell(o.to_tag)}: {cell(o.status.value)}", ""]
        if plan is not None:
            lines.append(f"Rollout {cell(plan.rollout_id)}, strategy {cell(getattr(plan, 'strategy', '') or '-')}, "
                         f"started {_utc(self._began)} UTC, took {_took(o.duration_seconds)}.")
            lines.append("")
        lines += ["| Host | From | To | Runs now | Started (UTC) | Ended (UTC) | Took | Result |",
                  "|---|---|---|---|---|---|---|---|"]
        names = list(self._rows) + [h for h in o.fleet if h not in self._rows]
        for name in names:
            row = self._rows.get(name) or _HostRow(name, None)
            took = (row.ended_at - row.started_at if row.ended_at is not None and row.started_at is not None
                    else None)
            lines.append("| " + " | ".join([
                cell(name), cell(row.from_tag or "nothing"), cell(o.to_tag), cell(o.fleet.get(name) or "-"),
                _utc(row.started_wall), _utc(row.ended_wall), _took(took), cell(row.result)]) + " |")
        lines += ["", f"**Outcome:** {cell(o.message)}"]
        if o.failed_host:
            step = o.failed_step.value if o.failed_step else "?"
            lines.append(f"Failed: {cell(o.failed_host)} at {cell(step)}; seen: {cell(o.seen or '-')}")
        if o.canary is not None:
            lines += _canary(o.canary)
        lines.append("")
        if self._errors is None:
            lines.append("Failed requests seen: not measured (no reading of the hosts' proxies during the "
                         "rollout).")
        else:
            lines.append(f"Failed requests seen: {self._errors} (5xx answers counted by the hosts' proxies during "
                         "the rollout, a bad version's own included).")
        return "\n".join(lines) + "\n\n"


def _canary(r: CanaryReport) -> list[str]:
    def side(x: Rates) -> str:
        share = "n/a" if x.error_share is None else f"{x.error_share * 100:.2f}%"
        p95 = "n/a" if x.p95 is None else f"{x.p95 * 1000:.0f} ms"
        return f"{x.requests} requests, {x.errors} 5xx ({share}), p95 {p95}"

    return ["", f"**Canary:** {cell(r.state.value)}: {cell(r.reason or '-')}",
            (f"New version ({cell(', '.join(r.canary_hosts))}): {cell(side(r.canary))}; "
            f"old ({cell(', '.join(r.baseline_hosts) or 'none')}): {cell(side(r.baseline))}.")]


def host_of(event: Event | None) -> str | None:
    """The host an event is about, if it is about one host."""
    host = getattr(event, "host", None)
    return host if isinstance(host, str) and host else None
