"""`l`: the app container's output on one droplet, refreshed from the host (no API request)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import RichLog

from zdd_tui.text import visible
from zdd_tui.ui.widgets import KeyFooter, TopBar

if TYPE_CHECKING:
    from zdd_tui.ui.app import ZddApp

REFRESH_SECONDS = 2.0


class LogsScreen(Screen):
    app: ZddApp  # Textual's property, typed as this console's app

    BINDINGS = [Binding("escape", "close", "Back", id="logs-back")]

    def __init__(self, host: str, sandbox: bool = False):
        super().__init__(id="logs")
        self.host = host
        self.sandbox = sandbox
        self._shown: list[str] = []

    def compose(self) -> ComposeResult:
        yield TopBar(f"zdd-tui · logs of {self.host}", "", self.sandbox)
        yield RichLog(id="logs-view", wrap=False, markup=False, max_lines=5000)
        yield KeyFooter()

    def on_mount(self) -> None:
        self.load()
        self.set_interval(REFRESH_SECONDS, self.load)

    @work(exclusive=True, group="logs", exit_on_error=False)
    async def load(self) -> None:
        view = self.query_one(RichLog)
        source = self.app.source
        if source is None:  # the dashboard opens logs only once connected
            view.write(f"✖ could not read logs from {self.host}: not connected")
            return
        try:
            lines = await source.logs(self.host, tail=500)
        except Exception as exc:  # noqa: BLE001 - shown in the view; the next refresh tries again
            view.write(visible(f"✖ could not read logs from {self.host}: {exc}"))
            return
        # Append only what is new: the tail overlaps the previous one.
        start = 0
        if self._shown:
            last = self._shown[-1]
            idx = max((i for i, line in enumerate(lines) if line == last), default=-1)
            start = idx + 1 if idx >= 0 else 0
            if idx < 0:
                view.clear()
        for line in lines[start:]:
            view.write(line)
        self._shown = lines

    def action_close(self) -> None:
        self.app.pop_screen()
