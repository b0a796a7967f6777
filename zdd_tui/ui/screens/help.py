"""`?`: every key, as currently bound (after the user's keymap)."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import Label, Static

from zdd_tui.ui import keys
from zdd_tui.ui.screens.confirm import PausingModal


class HelpScreen(PausingModal):
    BINDINGS = [
        Binding("escape", "close", "Close"),
        Binding("question_mark", "close", "Close", show=False),
        Binding("q", "close", "Close", show=False),
    ]

    def compose(self) -> ComposeResult:
        from zdd_tui.ui.widgets import theme_style

        current = keys.effective_keys(self.app.settings.keymap)
        table = Table(box=None, show_header=True, header_style="bold", pad_edge=False, expand=True)
        table.add_column("Key", no_wrap=True)
        table.add_column("Where", no_wrap=True)
        table.add_column("What it does")
        table.add_column("Binding id", no_wrap=True)
        for k in keys.KEYS:
            table.add_row(
                Text(keys.display_key(current[k.id]), style=theme_style(self.app, "accent", bold=True)),
                k.scope,
                k.help,
                Text(k.id, style=theme_style(self.app, "foreground-muted")),
            )
        table.add_row(Text("ctrl+p", style=theme_style(self.app, "accent", bold=True)), "app", "Command palette: every action and theme by name", "")
        with Vertical(id="help"):
            yield Label("Keys", id="help-title")
            yield Static(table)
            yield Static(
                f"Remap keys by binding id in {self.app.settings.source or '$XDG_CONFIG_HOME/zdd-tui/config.yaml'} "
                "(keymap: {deploy: ctrl+d}). Health is shown as ✔ healthy, ✖ unhealthy, ◐ draining, ◔ starting, ? unknown.",
                id="help-foot",
            )

    def action_close(self) -> None:
        self.dismiss(None)
