"""`?`: every key, as currently bound (after the user's keymap)."""

from __future__ import annotations

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

    def __init__(self) -> None:
        super().__init__()
        self._theme_shown: str | None = None

    def compose(self) -> ComposeResult:
        config = self.app.settings.source or "$XDG_CONFIG_HOME/zdd-tui/config.yaml"
        with Vertical(id="help"):
            yield Label("Keys", id="help-title")
            yield Static(id="help-keys")
            yield Static(
                f"Remap keys by binding id in {config} (keymap: {{deploy: ctrl+d}}). "
                "Health is shown as ✔ healthy, ✖ unhealthy, ◐ draining, ◔ starting, ? unknown.",
                id="help-foot",
            )

    def on_screen_resume(self) -> None:
        # The app keeps one help screen (installed): build its text again only for a new theme.
        if self._theme_shown != self.app.theme:
            self.theme_changed()

    def theme_changed(self) -> None:
        """Also called by the app when the theme changes while help is open."""
        self._theme_shown = self.app.theme
        self.query_one("#help-keys", Static).update(self._table())

    def _table(self) -> Text:
        """The keys as aligned lines of one Text. (A Rich Table is measured and rendered again
        for every line of it on each layout; with the keys a fixed list, padding is enough and
        `?` stays quick while 200 hosts stream.)"""
        from zdd_tui.ui.widgets import theme_style

        current = keys.effective_keys(self.app.settings.keymap)
        key_style = theme_style(self.app, "accent", bold=True)
        muted = theme_style(self.app, "foreground-muted")
        rows = [(keys.display_key(current[k.id]), k.scope, k.help, k.id) for k in keys.KEYS]
        rows.append(("ctrl+p", "app", "Command palette: every action and theme by name", ""))
        w_key = max(len("Key"), *(len(r[0]) for r in rows)) + 2
        w_where = max(len("Where"), *(len(r[1]) for r in rows)) + 2
        w_what = max(len("What it does"), *(len(r[2]) for r in rows)) + 2
        t = Text(no_wrap=True, overflow="ellipsis")
        t.append(f"{'Key':<{w_key}}{'Where':<{w_where}}{'What it does':<{w_what}}Binding id", style="bold")
        for key, where, what, binding_id in rows:
            t.append("\n")
            t.append(f"{key:<{w_key}}", style=key_style)
            t.append(f"{where:<{w_where}}{what:<{w_what}}")
            t.append(binding_id, style=muted)
        return t

    def action_close(self) -> None:
        self.dismiss(None)
