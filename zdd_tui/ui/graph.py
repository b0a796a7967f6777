"""The rollout view's pictures of traffic: the fleet's requests per second and failed (5xx)
requests across the whole rollout with the moment each host switched marked (textual-plotext),
and the canary's soak (a countdown with the live comparison, then the verdict).

Readable without colour: requests are a line, failed requests a ✖ on their own axis, a switch a
▼ on a vertical line; the legend says which is which. Imported by the rollout view only
(plotext takes a while to import; the dashboard does not need it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from rich.text import Text
from textual_plotext import PlotextPlot

from zdd_tui.config import CanaryConfig
from zdd_tui.events import Event
from zdd_tui.rollout.events import CanaryReport, CanaryState, SlotSwitched, TrafficSampled
from zdd_tui.text import visible

REQUESTS_MARKER = "braille"
FAILED_MARKER = "✖"
SWITCH_MARKER = "▼"
RIGHT: Any = "right"  # plotext's right-hand y axis (its type hints disagree between calls)


@dataclass
class RolloutTraffic:
    """The fleet's traffic across one rollout, from the engine's events: per TrafficSampled, the
    hosts' requests per second and 5xx per second added up; totals; and each switch."""

    start: float = 0.0  # the rollout's start (engine clock): x is seconds since it
    times: list[float] = field(default_factory=list)
    rps: list[float] = field(default_factory=list)
    failed: list[float] = field(default_factory=list)  # 5xx per second
    requests: int = 0
    errors: int = 0
    switches: list[tuple[float, str]] = field(default_factory=list)  # (x, host)
    samples: int = 0  # TrafficSampled seen (some may hold no reading)

    def add(self, ev: Event) -> bool:
        """Fold one event in; True when the picture changed."""
        at = (ev.at or 0.0) - self.start
        if isinstance(ev, SlotSwitched):
            self.switches.append((at, ev.host))
            return True
        if not isinstance(ev, TrafficSampled):
            return False
        self.samples += 1
        known = [h.rates for h in ev.hosts if h.rates is not None]
        if not known:
            return True  # no proxy answered: a gap in the line
        self.times.append(at)
        self.rps.append(sum(r.rps for r in known))
        self.failed.append(sum(r.errors / r.seconds for r in known if r.seconds > 0))
        self.requests += sum(r.requests for r in known)
        self.errors += sum(r.errors for r in known)
        return True

    def summary(self) -> str:
        if not self.times:
            waiting = "no proxy reading yet" if self.samples else "waiting for the first reading"
            return f"Traffic across the rollout: {waiting}"
        return (f"Traffic: {self.requests:,} requests, {'✖ ' if self.errors else ''}{self.errors:,} failed (5xx), "
                f"{len(self.switches)} switch(es)  ·  {LEGEND}")


class RolloutGraph(PlotextPlot):
    """The fleet's requests/s (left axis) and 5xx/s (right axis) over the rollout, switches marked."""

    def __init__(self, model: RolloutTraffic, **kw: Any):
        super().__init__(**kw)
        self.model = model
        self.theme = "clear"  # the widget's own background and text colour: any Textual theme

    def _colors(self) -> tuple[Any, Any, Any]:
        """Requests, failed, switches: the theme's primary, error and warning (ANSI themes: the
        terminal's own palette, by name)."""
        theme = self.app.current_theme
        if theme is None or theme.ansi:
            return "blue", "red", "orange"  # plotext's names for ANSI colours 4, 1 and 3
        from textual.color import Color

        def rgb(var: str, fallback: str) -> tuple[int, int, int]:
            try:
                return Color.parse(self.app.theme_variables.get(var) or fallback).rgb
            except Exception:  # noqa: BLE001 - an odd user theme value: a plain colour instead
                return Color.parse(fallback).rgb

        return rgb("primary", "#3070f0"), rgb("error", "#e03030"), rgb("warning", "#e0a030")

    def render(self) -> Any:
        m = self.model
        plt = self.plt
        plt.clear_figure()
        req_color, failed_color, switch_color = self._colors()
        top = nice_top(max(m.rps, default=0.0))
        right = nice_top(max(m.failed, default=0.0))
        end = max([*m.times, *(x for x, _ in m.switches), 1.0])
        plt.xlim(0, end)
        ticks = time_ticks(end)
        plt.xticks(ticks, [time_text(x) for x in ticks])
        plt.ylim(0, top)
        plt.yticks([0, top / 2, top], [axis_text(0), axis_text(top / 2), axis_text(top)])
        plt.ylim(0, right, yside=RIGHT)
        plt.yticks([0, right], ["0", f"{axis_text(right)} 5xx/s"], yside=RIGHT)
        if m.times:
            plt.plot(m.times, m.rps, marker=REQUESTS_MARKER, color=req_color)
            # Failed requests on their own axis, so one 5xx is visible next to hundreds of requests.
            failed = [(x, f) for x, f in zip(m.times, m.failed, strict=True) if f > 0]
            if failed:
                plt.scatter([x for x, _ in failed], [f for _, f in failed], marker=FAILED_MARKER,
                            color=failed_color, yside=RIGHT)
        for x, _ in m.switches:
            plt.vline(x, switch_color)
        if m.switches:
            plt.scatter([x for x, _ in m.switches], [top] * len(m.switches), marker=SWITCH_MARKER, color=switch_color)
        return super().render()


LEGEND = "⣀ req/s (left)  ✖ 5xx/s (right)  ▼│ a host switched"


def nice_top(value: float) -> float:
    """An axis' top a little above `value`: 1, 2 or 5 times a power of ten (1 for nothing)."""
    if value <= 0:
        return 1.0
    step = 10 ** math.floor(math.log10(value * 1.1))
    for k in (1, 2, 5, 10):
        if k * step >= value * 1.1:
            return float(k * step)
    return float(10 * step)


def time_ticks(end: float, most: int = 6) -> list[float]:
    """Round seconds for the time axis: at most `most` of them from 0 to `end`."""
    for step in (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600):
        if end / step <= most - 1:
            break
    return [float(x) for x in range(0, int(end) + 1, step)]


def time_text(seconds: float) -> str:
    s = int(seconds)
    return f"{s}s" if s < 120 else f"{s // 60}m{s % 60:02d}s"


def axis_text(value: float) -> str:
    if value >= 1000:
        return f"{value / 1000:g}k"
    return f"{value:g}"


def canary_text(report: CanaryReport, limits: CanaryConfig, to_tag: str, from_tag: str | None,
                styles: dict[str, Any]) -> Text:
    """The soak in words: a countdown while it runs, the two sides' numbers, the thresholds, and
    then the verdict. `styles`: Rich styles for "success", "warning", "error", "muted"."""
    t = Text()
    state = report.state
    soaking = state is CanaryState.SOAKING
    if soaking:
        span = report.warmup_seconds if report.warming_up else report.soak_seconds
        left = max(0.0, span - report.elapsed_seconds)
        done = min(1.0, report.elapsed_seconds / span) if span > 0 else 1.0
        width = 20
        filled = int(done * width)
        if report.warming_up:
            t.append("◷ Canary warming up (not judged): ", style="bold")
            t.append(f"{left:.0f}s left of {span:.0f}s, then a {report.soak_seconds:.0f}s soak  ")
        else:
            t.append("◷ Canary soaking: ", style="bold")
            t.append(f"{left:.0f}s left of {span:.0f}s  ")
        t.append("█" * filled + "░" * (width - filled))
    else:
        glyph, var, word = {
            CanaryState.PASSED: ("✔", "success", "PASSED"),
            CanaryState.FAILED: ("✖", "error", "FAILED"),
            CanaryState.INSUFFICIENT: ("◐", "warning", "NOT ENOUGH TRAFFIC"),
        }[state]
        t.append(f"{glyph} Canary {word}", style=styles.get(var, ""))
        t.append(f" after {report.elapsed_seconds:.0f}s")
        if report.reason:
            t.append(f": {visible(report.reason)}")
    t.append("\n")
    t.append(f"  {'':<5}{'version':<14}{'hosts':<22}{'requests':>9}{'5xx':>7}{'5xx share':>11}{'p95':>9}\n",
             style=styles.get("muted", ""))
    for label, tag, hosts, r in (("new", to_tag, report.canary_hosts, report.canary),
                                 ("old", from_tag or "—", report.baseline_hosts, report.baseline)):
        share = "—" if r.error_share is None else f"{r.error_share * 100:.2f}%"
        p95 = "—" if r.p95 is None else f"{r.p95 * 1000:.0f}ms"
        names = ", ".join(hosts) if len(hosts) <= 2 else f"{hosts[0]} +{len(hosts) - 1}"
        t.append(f"  {label:<5}{visible(tag)[:13]:<14}{visible(names or 'none')[:21]:<22}{r.requests:>9,}")
        t.append(f"{r.errors:>7,}", style=styles.get("error", "") if r.errors else "")
        t.append(f"{share:>11}{p95:>9}\n")
    if not soaking:  # the verdict's reason names the threshold that decided
        if report.action:
            t.append(f"  {visible(report.action)}")
        return t
    t.append(f"  fails if new 5xx share > old + {limits.max_error_rate_increase * 100:.2f} points, or new p95 > "
             f"{limits.max_latency_ratio:g}x max(old p95, {limits.latency_floor_ms}ms); needs "
             f"{limits.min_requests} requests each side", style=styles.get("muted", ""))
    return t
