"""`b`: build the image, tag latest and sha-<git sha>, push; progress from zdd_tui.images."""

from __future__ import annotations

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, RichLog

from zdd_tui.ui.widgets import TopBar


class BuildScreen(Screen):
    BINDINGS = [Binding("escape", "close", "Back", id="build-back")]

    def __init__(self, sandbox: bool = False):
        super().__init__(id="build")
        self.sandbox = sandbox

    def compose(self) -> ComposeResult:
        yield TopBar("zdd-tui · build and push", "", self.sandbox)
        yield RichLog(id="build-log", wrap=True, markup=False)
        yield Footer()

    def on_mount(self) -> None:
        self.build()

    @work(exclusive=True, group="build", exit_on_error=False)
    async def build(self) -> None:
        log = self.query_one(RichLog)
        build = getattr(self.app.source, "build_and_push", None)
        if build is None:
            log.write("Build and push is not available for this fleet yet.")
            return
        try:
            tags = await build(lambda line: log.write(str(line)))
        except Exception as exc:
            log.write(f"✖ build failed: {exc}")
            return
        log.write(f"✔ pushed {', '.join(tags)}")
        if self.app.poller:
            self.app.poller.poke("tags")

    def action_close(self) -> None:
        self.app.pop_screen()
