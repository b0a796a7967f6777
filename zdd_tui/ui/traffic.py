"""The dashboard's traffic pane: per droplet, a sparkline of requests per second and one of 5xx
answers over the last minutes (Textual's Sparkline), with the numbers beside them in words and
glyphs (colour is never the only signal: a 5xx count has its ✖, a host without readings says
"no data").

Its data is project.traffic's history: the console's own readings outside a rollout, the
engine's TrafficSampled events during one.
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Label, Sparkline

from zdd_tui.project.traffic import TrafficHistory
from zdd_tui.text import visible

BUCKETS = 60  # steps across the history's span (5 s each over 5 minutes)
MAX_ROWS = 40  # droplets drawn one by one; beyond that the fleet's row still counts every host
FLEET = "fleet"  # the row that adds every host up (a droplet cannot be named so: not a host row key)


def rate_text(rps: float) -> str:
    """Requests per second in at most 7 cells: "1.2k/s", "85/s", "0.4/s"."""
    if rps >= 10_000:
        return f"{rps / 1000:.0f}k/s"
    if rps >= 1000:
        return f"{rps / 1000:.1f}k/s"
    if rps >= 10 or rps == 0:
        return f"{rps:.0f}/s"
    return f"{rps:.1f}/s"


def error_text(errors: int) -> str:
    """5xx answers over the span: a glyph when there are any."""
    return f"✖ {errors}" if errors else "0"


class TrafficRow(Horizontal):
    """One host (or the whole fleet): name, requests/s sparkline and the latest rate, 5xx
    sparkline and their count over the span; "no data" while there is no reading."""

    def __init__(self, host: str, title: str, **kw):
        super().__init__(classes="traffic-row -none", **kw)
        self.host = host
        self._title = title
        self.shown: tuple | None = None  # what was painted last (unchanged: nothing is redrawn)

    def compose(self) -> ComposeResult:
        yield Label(Text(visible(self._title)[:12]), classes="t-name")  # a droplet's name: never markup
        yield Sparkline([], classes="t-req")
        yield Label("", classes="t-rate")
        yield Sparkline([], classes="t-err")
        yield Label("", classes="t-errs")
        yield Label("— no data (no proxy reading)", classes="t-none")

    def show(self, req: list[float] | None, err: list[float], rps: float | None, errors: int) -> None:
        """req None: no reading in the span (no proxy yet, or the proxy does not answer); rps
        None: the latest reading failed."""
        shown = (req, err, rps, errors)
        if shown == self.shown:
            return
        self.shown = shown
        self.set_class(req is None, "-none")
        self.set_class(bool(errors), "-errors")
        if req is None:
            return
        self.query_one(".t-req", Sparkline).data = req
        self.query_one(".t-err", Sparkline).data = err
        self.query_one(".t-rate", Label).update("—" if rps is None else rate_text(rps))
        self.query_one(".t-errs", Label).update(error_text(errors))


Row = tuple[list[float] | None, list[float], float | None, int]


def row_data(history: TrafficHistory, hosts: list[str], now: float) -> Row:
    """(requests/s per step, None when no reading in the span; 5xx/s per step; the latest rate,
    None when the latest reading failed; 5xx over the span) of `hosts` together: a TrafficRow."""
    since = now - history.keep_seconds
    if not any(p.rates is not None and p.at > since for h in hosts for p in history.points(h)):
        return None, [], None, 0
    latest = [history.latest(h) for h in hosts]
    # The steps end at the oldest of the hosts' latest readings: a slice of a large fleet is read
    # every few seconds, and the time since is not a drop in traffic, only not read yet.
    end = min([p.at for p in latest if p is not None] + [now])
    req, err = history.series(hosts, end, BUCKETS)
    rates = [p.rates for p in latest if p is not None and p.rates is not None and p.at > since]
    rps = sum(r.rps for r in rates) if rates else None
    return req, err, rps, sum(history.totals(h, now)[1] for h in hosts)


class TrafficGrid(VerticalScroll):
    """The fleet's row (every host added up), then one row per droplet (the first MAX_ROWS, in
    the droplets' order), two to a line."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.names: list[str] = []  # the droplets with a row of their own
        self._latest: tuple[list[str], TrafficHistory | None, float] = ([], None, 0.0)

    def sync(self, fleet: list[str], history: TrafficHistory | None, now: float) -> None:
        self._latest = (fleet, history, now)
        names = fleet[:MAX_ROWS]
        if names != self.names:
            self.names = names
            self.remove_children()
            self.mount(TrafficRow(FLEET, "all hosts"), *(TrafficRow(n, n) for n in names))
            # Their own widgets are composed on the next refresh: paint then, what is latest then.
            self.call_after_refresh(lambda: self.sync(*self._latest))
            return
        for row in self.query(TrafficRow):
            if not row.children:
                continue
            if history is None:
                row.show(None, [], None, 0)
            else:
                row.show(*row_data(history, fleet if row.host == FLEET else [row.host], now))
