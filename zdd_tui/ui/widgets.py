"""Widgets shared by the screens. Colours come from the running theme's variables only."""

from __future__ import annotations

from typing import Any, Iterable

from rich.style import Style
from rich.text import Text
from textual.app import ComposeResult
from textual.color import Color
from textual.containers import Horizontal
from textual.widgets import DataTable, Label, ProgressBar, Static

from zdd_tui.rollout.events import Phase
from zdd_tui.ui.state import Health, Row


def theme_style(app: Any, var: str, bold: bool = False) -> Style:
    """A Rich style in the colour of a theme variable (for cells, which are Rich text)."""
    value = app.theme_variables.get(var) or app.theme_variables.get("foreground", "")
    try:
        color = Color.parse(value)
        if color.a < 1.0:  # e.g. foreground-muted: blend onto the background as the screen would
            color = Color.parse(app.theme_variables.get("background", "#000000")).blend(color, color.a)
        return Style(color=color.rich_color, bold=bold)
    except Exception:  # an odd user theme value: fall back to the terminal's colour
        return Style(bold=bold)


def health_text(app: Any, h: Health) -> Text:
    return Text(h.label, style=theme_style(app, h.theme_var, bold=h is Health.FAIL))


class TopBar(Horizontal):
    """Title, where we are connected, and the SANDBOX label whenever the fleet is the sandbox."""

    def __init__(self, title: str, where: str, sandbox: bool, **kw):
        super().__init__(**kw)
        self._title, self._where, self._sandbox = title, where, sandbox

    def compose(self) -> ComposeResult:
        yield Label(self._title, id="title")
        yield Label(self._where, id="where")
        if self._sandbox:
            yield Label(" SANDBOX · local stand-in, not DigitalOcean ", id="sandbox-label")

    def set_where(self, where: str) -> None:
        self._where = where
        self.query_one("#where", Label).update(where)


class FleetTable(DataTable):
    """A DataTable fed whole rows; it repaints only the cells that changed.

    Rows are (key, cells); a cell is a str or a Health. A new key order (a host added, a newer
    tag) rebuilds the table and keeps the cursor on the same key.
    """

    def __init__(self, columns: Iterable[str], **kw):
        super().__init__(cursor_type="row", zebra_stripes=False, **kw)
        self._columns = tuple(columns)
        self._shown: dict[str, tuple] = {}  # key -> cells as shown
        self._order: list[str] = []
        self._all: list[Row] = []
        self.filter_text = ""
        self.cell_updates = 0  # cells repainted, for tests and the benchmark

    def on_mount(self) -> None:
        for i, c in enumerate(self._columns):
            self.add_column(c, key=str(i))

    def _render(self, cell: Any) -> Any:
        if isinstance(cell, Health):
            return health_text(self.app, cell)
        return Text(str(cell))

    def _visible(self) -> list[Row]:
        f = self.filter_text.lower()
        if not f:
            return self._all
        return [r for r in self._all if any(f in (c.label if isinstance(c, Health) else str(c)).lower() for c in r[1])]

    def sync(self, rows: list[Row]) -> None:
        self._all = list(rows)
        rows = self._visible()
        order = [k for k, _ in rows]
        if order != self._order:
            self._rebuild(rows)
            return
        for key, cells in rows:
            old = self._shown.get(key)
            for i, cell in enumerate(cells):
                if old is None or old[i] != cell:
                    self.update_cell(key, str(i), self._render(cell), update_width=True)
                    self.cell_updates += 1
            self._shown[key] = cells

    def _rebuild(self, rows: list[Row]) -> None:
        keep = self.selected_key
        self.clear()
        self._shown.clear()
        for key, cells in rows:
            self.add_row(*(self._render(c) for c in cells), key=key)
            self._shown[key] = cells
            self.cell_updates += len(cells)
        self._order = [k for k, _ in rows]
        if keep in self._shown:
            self.move_cursor(row=self._order.index(keep), animate=False)

    def repaint_all(self) -> None:
        """After a theme change the colours of every cell change."""
        self._order = []
        self.sync(self._all)

    def set_filter(self, text: str) -> None:
        self.filter_text = text
        self.sync(self._all)

    @property
    def selected_key(self) -> str | None:
        if not self._order or self.cursor_row < 0 or self.cursor_row >= len(self._order):
            return None
        return self._order[self.cursor_row]


class HostRow(Horizontal):
    """One host in the rollout view: name, bar, phase in words, LB and direct health, elapsed."""

    def __init__(self, name: str, from_tag: str | None, **kw):
        super().__init__(classes="host-row", **kw)
        self.host = name
        self.from_tag = from_tag
        self.phase = Phase.PENDING
        self.started_at: float | None = None
        self.ended_at: float | None = None
        self.lb = Health.UNKNOWN
        self.direct = Health.UNKNOWN

    def compose(self) -> ComposeResult:
        yield Label(self.host, classes="host-name")
        yield ProgressBar(total=1.0, show_eta=False, show_percentage=True, classes="host-bar")
        yield Label(Phase.PENDING.words, classes="host-phase")
        yield Label("", classes="host-lb")
        yield Label("", classes="host-direct")
        yield Label("0:00", classes="host-elapsed")

    def on_mount(self) -> None:
        self.paint_health()

    def set_phase(self, phase: Phase, detail: str, at: float) -> None:
        self.phase = phase
        if self.started_at is None and phase not in (Phase.PENDING, Phase.SKIPPED):
            self.started_at = at
        if phase in (Phase.DONE, Phase.RESTORED, Phase.FAILED, Phase.SKIPPED):
            self.ended_at = at if self.started_at is not None else None
        words = phase.words + (f": {detail}" if detail and phase in (Phase.FAILED, Phase.RESTORED) else "")
        label = self.query_one(".host-phase", Label)
        label.update(words)
        self.set_class(phase is Phase.FAILED, "-failed")
        self.set_class(phase in (Phase.RESTORING, Phase.RESTORED), "-restored")
        self.set_class(phase is Phase.DONE, "-done")
        if phase is Phase.DONE:
            self.query_one(ProgressBar).update(progress=1.0)

    def set_progress(self, fraction: float) -> None:
        self.query_one(ProgressBar).update(progress=max(0.0, min(fraction, 1.0)))

    def set_health(self, view: str, healthy: bool | None, detail: str) -> None:
        h = Health.DRAINING if (healthy is False and "drain" in detail) else Health.from_bool(healthy)
        if view == "lb":
            self.lb = h
        else:
            self.direct = h
        self.paint_health()

    def paint_health(self) -> None:
        self.query_one(".host-lb", Label).update(Text("LB ") + health_text(self.app, self.lb))
        self.query_one(".host-direct", Label).update(Text("direct ") + health_text(self.app, self.direct))

    def tick(self, now: float) -> None:
        if self.started_at is None:
            return
        end = self.ended_at if self.ended_at is not None else now
        from zdd_tui.ui.state import human_elapsed

        self.query_one(".host-elapsed", Label).update(human_elapsed(end - self.started_at))


class KeyValue(Static):
    """Aligned `label  value` lines (the load balancer's settings)."""

    def show(self, lines: list[tuple[str, str]]) -> None:
        width = max((len(k) for k, _ in lines), default=0)
        text = Text()
        for i, (k, v) in enumerate(lines):
            if i:
                text.append("\n")
            text.append(k.ljust(width + 2), style=theme_style(self.app, "foreground-muted"))
            text.append(v)
        self.update(text)
