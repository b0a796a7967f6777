"""Widgets shared by the screens. Colours come from the running theme's variables only."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import Any

from rich.cells import cell_len, set_cell_size
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.app import ComposeResult
from textual.color import Color
from textual.containers import Horizontal
from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.widgets import DataTable, Footer, Label, Static
from textual.widgets.data_table import ColumnKey

from zdd_tui.rollout.events import Phase
from zdd_tui.text import visible
from zdd_tui.ui.state import Health, HostRow, Row

_STYLE_CACHE: list = [None, {}]  # [the theme_variables dict the styles were made from, {(var, bold): Style}]


def theme_style(app: Any, var: str, bold: bool = False) -> Style:
    """A Rich style in the colour of a theme variable (for cells, which are Rich text).

    Memoised per theme: Textual replaces `app.theme_variables` with a new dict when the theme
    changes, so the cache is keyed on that dict (held here, so its identity stays unique). A
    host line asks for ~6 styles and 200 streaming hosts repaint ~30 lines 10 times a second.
    """
    variables = app.theme_variables
    if _STYLE_CACHE[0] is not variables:
        _STYLE_CACHE[0], _STYLE_CACHE[1] = variables, {}
    cache = _STYLE_CACHE[1]
    style = cache.get((var, bold))
    if style is None:
        style = cache[(var, bold)] = _theme_style(variables, var, bold)
    return style


def _theme_style(variables: dict, var: str, bold: bool) -> Style:
    value = variables.get(var) or variables.get("foreground", "")
    try:
        color = Color.parse(value)
        if color.a < 1.0:  # e.g. foreground-muted: blend onto the background as the screen would
            color = Color.parse(variables.get("background", "#000000")).blend(color, color.a)
        return Style(color=color.rich_color, bold=bold)
    except Exception:  # noqa: BLE001 - an odd user theme value: fall back to the terminal's colour
        return Style(bold=bold)


def _health_style(app: Any, h: Health) -> Style:
    return theme_style(app, h.theme_var, bold=h is Health.FAIL)


def health_text(app: Any, h: Health) -> Text:
    return Text(h.label, style=_health_style(app, h))


_BOLD = Style(bold=True)


class TopBar(Horizontal):
    """Title, where we are connected, and the SANDBOX label whenever the fleet is the sandbox."""

    def __init__(self, title: str, where: str, sandbox: bool, **kw):
        super().__init__(**kw)
        self._title, self._where, self._sandbox = title, where, sandbox

    def compose(self) -> ComposeResult:
        # Text, not markup: the title names a droplet, `where` a path or a URL.
        yield Label(Text(self._title), id="title")
        yield Label(Text(self._where), id="where")
        if self._sandbox:
            yield Label(" SANDBOX · local stand-in, not DigitalOcean ", id="sandbox-label")

    def set_where(self, where: str) -> None:
        self._where = where
        self.query_one("#where", Label).update(Text(where))


class KeyFooter(Footer):
    """Textual's footer, rebuilt only when the keys it would show change.

    Footer composes its keys again on every bindings signal, and a screen sends one each time
    a dialog opens over it or closes: that is ~30 widgets mounted and thrown away per `?`,
    work and garbage (and so collector pauses) while a rollout streams.
    """

    def __init__(self, **kw):
        super().__init__(**kw)
        self._shown: tuple | None = None

    def bindings_changed(self, screen) -> None:
        if screen.app.app_focus and self.is_attached and screen is self.screen:
            keys_now = tuple(
                (key, b.action, b.description, b.show, enabled, tooltip)
                for key, (_node, b, enabled, tooltip) in screen.active_bindings.items()
            )
            if keys_now == self._shown:
                return
            self._shown = keys_now
        super().bindings_changed(screen)


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

    def _cell_text(self, cell: Any) -> Text:
        if isinstance(cell, Health):
            return health_text(self.app, cell)
        return Text(visible(str(cell)))  # cells quote the API and the hosts

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
                    text = self._cell_text(cell)
                    if self._wider_than_column(i, text):
                        # A wider cell (a host's tag after "—"): DataTable widens the column
                        # when idle but keeps the lines it drew at the old width; draw them again
                        # once the new width is in.
                        self._rebuild(rows)
                        self.call_after_refresh(self._redraw)
                        return
                    self.update_cell(key, str(i), text, update_width=True)
                    self.cell_updates += 1
            self._shown[key] = cells

    def _redraw(self) -> None:
        self._clear_caches()
        self.refresh()

    def _wider_than_column(self, index: int, text: Text) -> bool:
        column = self.columns.get(ColumnKey(str(index)))
        if column is None:
            return False
        return text.cell_len > max(column.content_width, cell_len(str(column.label)))

    def _rebuild(self, rows: list[Row]) -> None:
        keep = self.selected_key
        self.clear()
        self._shown.clear()
        for key, cells in rows:
            self.add_row(*(self._cell_text(c) for c in cells), key=key)
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


_PHASE_VAR = {Phase.DONE: "success", Phase.FAILED: "error", Phase.RESTORING: "warning", Phase.RESTORED: "warning"}
BAR_WIDTH = 18
LB_WIDTH = 19  # "✔ 3 checks passed", "✖ advisory 12s old"
# A local-swap line gives the LB's 19 cells and half the bar to the proxy and what it serves.
SWAP_BAR_WIDTH = 9
HEALTH_WIDTH = 11  # "✖ unhealthy"
SERVING_WIDTH = 14  # "b sha-c0ffee1"


class InstantScrollView(ScrollView):
    """A line-drawn ScrollView whose scroll keys (ScrollView's own bindings) move at once.
    By default Textual animates key scrolls (50 lines/s) and applies them after the next
    refresh: a row reached ~45 ms after the key, with every line in between painted."""

    _base_style = Style()

    def render_lines(self, crop):
        # The widget's own style, once per paint rather than once per line (it is ~0.1 ms each).
        self._base_style = self.rich_style
        return super().render_lines(crop)

    def action_scroll_up(self) -> None:
        self.scroll_up(animate=False, immediate=True)

    def action_scroll_down(self) -> None:
        self.scroll_down(animate=False, immediate=True)

    def action_scroll_left(self) -> None:
        self.scroll_left(animate=False, immediate=True)

    def action_scroll_right(self) -> None:
        self.scroll_right(animate=False, immediate=True)

    def action_page_up(self) -> None:
        self.scroll_page_up(animate=False)

    def action_page_down(self) -> None:
        self.scroll_page_down(animate=False)

    def action_scroll_home(self) -> None:
        self.scroll_home(animate=False, immediate=True)

    def action_scroll_end(self) -> None:
        self.scroll_end(animate=False, immediate=True)


class HostTable(InstantScrollView, can_focus=True):
    """Every host of a rollout, one line each: name, progress bar, percentage, phase in words,
    LB and direct health (local-swap: the proxy's health, the slot and tag it sends traffic to,
    and the app's own health), elapsed.

    One widget drawing only the lines in view (Textual's line API), so 200 hosts streaming
    events never cause a relayout: an update repaints ~30 lines, and keys stay immediate.
    The bar is drawn with the same glyphs as Textual's ProgressBar.
    """

    def __init__(self, rows: dict[str, HostRow], **kw):
        super().__init__(**kw)
        self.rows = rows
        self.order = list(rows)
        self._index = {name: i for i, name in enumerate(self.order)}
        self.lines_rendered = 0  # for tests and the benchmark

    def on_mount(self) -> None:
        self.virtual_size = Size(self.size.width, len(self.order))

    def visible_names(self) -> list[str]:
        top = self.scroll_offset.y
        return self.order[top : top + max(self.size.height, 1)]

    def refresh_rows(self, names: Iterable[str]) -> None:
        """Repaint only the lines of these hosts that are in view (not the whole widget and its
        scrollbar): a line is drawn again from its row's current model by `render_line`."""
        top = self.scroll_offset.y
        height = max(self.size.height, 1)
        index = self._index
        ys = sorted(y for y in (index.get(n, -1) - top for n in names) if 0 <= y < height)
        start: int | None = None
        prev = 0  # read only once start is set
        for y in ys:  # contiguous runs: one region each
            if start is None:
                start = prev = y
            elif y == prev + 1:
                prev = y
            else:
                self.refresh_lines(top + start, prev - start + 1)
                start = prev = y
        if start is not None:
            self.refresh_lines(top + start, prev - start + 1)

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        idx = self.scroll_offset.y + y
        base = self._base_style
        if idx >= len(self.order):
            return Strip.blank(width, base)
        self.lines_rendered += 1
        r = self.rows[self.order[idx]]
        segments, used = self._segments(r, base)
        if used < width:
            segments.append(Segment(" " * (width - used), base))
            return Strip(segments, width)
        return Strip(segments, used).crop(0, width)

    def _segments(self, r: HostRow, base: Style) -> tuple[list[Segment], int]:
        """The line as styled pieces (Segments made here directly: going through a Rich Text
        and its renderer cost ~3x as much, for ~30 lines 10 times a second)."""
        from zdd_tui.ui.state import human_elapsed

        app = self.app
        plain = base
        pieces: list[tuple[str, Style]] = [(f" {r.host[:13]:<13} ", base + _BOLD)]
        bar = SWAP_BAR_WIDTH if r.swap else BAR_WIDTH
        filled = int(r.fraction * bar)
        pieces.append(("━" * filled, base + theme_style(app, "success" if r.fraction >= 1.0 else "primary")))
        if filled < bar:
            pieces.append(("╺" + "━" * (bar - filled - 1), base + theme_style(app, "foreground-muted")))
        words = r.phase.words + (f": {r.detail}" if r.detail and r.phase in (Phase.FAILED, Phase.RESTORED) else "")
        var = _PHASE_VAR.get(r.phase)
        pieces.append((f" {int(r.fraction * 100):>3}%  ", plain))
        phase_style = base + theme_style(app, var, bold=r.phase is Phase.FAILED) if var else plain
        pieces.append((set_cell_size(words, 30), phase_style))
        if r.swap:
            pieces.append(("  proxy ", plain))
            pieces.append((set_cell_size(r.proxy.label, HEALTH_WIDTH), base + _health_style(app, r.proxy)))
            pieces.append(("  → ", plain))
            pieces.append((set_cell_size(r.serving_text(), SERVING_WIDTH), plain))
            pieces.append((" app ", plain))
            pieces.append((set_cell_size(r.direct.label, HEALTH_WIDTH), base + _health_style(app, r.direct)))
            pieces.append((f"{human_elapsed(r.elapsed):>6}", plain))
        else:
            pieces.append(("  LB ", plain))
            lb = set_cell_size(r.lb_text(), LB_WIDTH)
            pieces.append((lb, base + _health_style(app, r.lb)))
            pieces.append((" direct ", plain))
            pieces.append((r.direct.label, base + _health_style(app, r.direct)))
            pieces.append((" " * max(1, 12 - len(r.direct.label)) + f"{human_elapsed(r.elapsed):>6}", plain))
        segments = [Segment(text, style) for text, style in pieces if text]
        return segments, sum(cell_len(text) for text, _ in pieces)


class LogView(InstantScrollView, can_focus=True):
    """A bounded log drawn line by line (Textual's line API), for the rollout's stream.

    Entries are kept as plain (prefix, text, level) tuples and turned into a line only while
    in view. RichLog keeps a rendered Strip per line (with its caches, ~10 objects each): 2,000
    of them made every full garbage collection walk ~150,000 more objects, pauses of 100 ms and
    more while 200 hosts stream.

    It follows the end (drawing the newest lines, whatever the scroll position says) until the
    reader scrolls up; scrolled up, the lines in view stay put as new ones come and old ones go.
    """

    LEVEL_VARS = {"error": "error", "warning": "warning"}

    def __init__(self, max_lines: int, **kw):
        super().__init__(**kw)
        self.entries: deque[tuple[str, str, str | None]] = deque(maxlen=max_lines)
        self._widest = 0
        self._follow = True
        self._moving = False  # our own scroll, not the reader's

    def write_entries(self, entries: Iterable[tuple[str, str, str | None]]) -> None:
        dropped = 0
        for e in entries:
            dropped += len(self.entries) == self.entries.maxlen
            self.entries.append(e)
            self._widest = max(self._widest, cell_len(e[0]) + cell_len(e[1]))
        # The scrollable height grows in steps: each change of the size is a relayout of the
        # whole screen (~10 ms), and lines arrive up to 10 times a second. (The width is exact,
        # or a scrollbar would show for nothing; it stops changing once the longest line is in.)
        lines = -(-len(self.entries) // 256) * 256
        size = Size(self._widest, min(lines, self.entries.maxlen or lines))
        if size != self.virtual_size:
            self.virtual_size = size
        if self._follow:
            self._move_to(len(self.entries) - self._rows_in_view())  # keeps the scrollbar true
        elif dropped:
            self._move_to(self.scroll_offset.y - dropped)
        self.refresh()

    def _move_to(self, y: int) -> None:
        self._moving = True
        try:
            # force: a size just grown is not laid out yet, and Textual would not scroll past
            # the old one (the new size bounds the scroll all the same).
            self.scroll_to(y=max(0, y), animate=False, immediate=True, force=True)
        finally:
            self._moving = False

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        if not self._moving:  # the reader scrolled: follow again once back at the last line
            self._follow = round(new_value) >= len(self.entries) - self._rows_in_view()

    def _rows_in_view(self) -> int:
        return max(self.scrollable_content_region.height, 1)  # less a horizontal scrollbar

    def text(self) -> str:
        """Every entry as plain text (for tests)."""
        return "\n".join(p + t for p, t, _ in self.entries)

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        base = self._base_style
        top = max(0, len(self.entries) - self._rows_in_view()) if self._follow else self.scroll_offset.y
        idx = top + y
        if idx >= len(self.entries):
            return Strip.blank(width, base)
        prefix, text, level = self.entries[idx]
        var = self.LEVEL_VARS.get(level or "")
        line = Text(prefix, no_wrap=True, end="")
        line.append(text, style=theme_style(self.app, var) if var else "")
        x = self.scroll_offset.x
        strip = Strip(list(line.render(self.app.console)))
        return strip.crop(x, x + width).adjust_cell_length(width, base).apply_style(base)


class KeyValue(Static):
    """Aligned `label  value` lines (the load balancer's settings)."""

    def show(self, lines: list[tuple[str, str]]) -> None:
        width = max((len(k) for k, _ in lines), default=0)
        text = Text()
        for i, (k, v) in enumerate(lines):
            if i:
                text.append("\n")
            text.append(k.ljust(width + 2), style=theme_style(self.app, "foreground-muted"))
            text.append(visible(v))  # the API's names and settings
        self.update(text)
