"""`l`: the app container's output on one droplet, followed live from the host (no API request);
`p` pauses (new lines wait) and resumes. The title says which container (tag) the lines are from."""

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

REFRESH_SECONDS = 1.0


class LogsScreen(Screen):
    app: ZddApp  # Textual's property, typed as this console's app

    BINDINGS = [
        Binding("escape", "close", "Back", id="logs-back"),
        Binding("p", "pause", "Pause/follow", id="logs-pause"),
    ]

    def __init__(self, host: str, sandbox: bool = False):
        super().__init__(id="logs")
        self.host = host
        self.sandbox = sandbox
        self._shown: list[str] = []
        self.paused = False
        self.tag: str | None = None  # the container's image tag the lines come from

    def compose(self) -> ComposeResult:
        yield TopBar(f"zdd-tui · logs of {self.host}", "", self.sandbox)
        yield RichLog(id="logs-view", wrap=False, markup=False, max_lines=5000)
        yield KeyFooter()

    def on_mount(self) -> None:
        self.load()
        self.set_interval(REFRESH_SECONDS, self._follow)

    def _follow(self) -> None:
        if not self.paused:
            self.load()

    def _where(self) -> str:
        tag = self.tag or "no container"
        return f"container {tag} · " + ("PAUSED (p follows again)" if self.paused else "following (p pauses)")

    def _container(self) -> None:
        """Which tag the container runs (the dashboard's last look at the host); a new one is
        marked in the log, so lines from two versions are never mistaken for one."""
        host = self.app.fleet.hosts.get(self.host)
        tag = host.tag if host is not None else None
        if tag != self.tag and tag is not None:
            if self.tag is not None:
                self.query_one(RichLog).write(f"── the container now runs {tag} ──")
            self.tag = tag
        self.query_one(TopBar).set_where(self._where())

    def action_pause(self) -> None:
        self.paused = not self.paused
        self.query_one(TopBar).set_where(self._where())
        if not self.paused:
            self.load()

    @work(exclusive=True, group="logs", exit_on_error=False)
    async def load(self) -> None:
        view = self.query_one(RichLog)
        self._container()
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
