"""`s`: the setup wizard (steps from zdd_tui/setup/, each with what it will cost).

The token Input is masked and not focused at start: a focused Input swallows single-key
bindings, so the screen opens on the step list and Tab (or a click) reaches the Input.
"""

from __future__ import annotations

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import Button, Footer, Input, Label, Static

from zdd_tui.ui.widgets import TopBar, theme_style


def load_steps(config):
    """The setup steps as (title, cost text) pairs, from zdd_tui.setup if it provides them."""
    try:
        from zdd_tui import setup as setup_pkg
    except Exception:
        return None
    fn = getattr(setup_pkg, "steps", None) or getattr(setup_pkg, "plan_steps", None)
    if fn is None:
        return None
    out = []
    for s in fn(config):
        title = getattr(s, "title", None) or getattr(s, "name", str(s))
        cost = getattr(s, "cost", None) or getattr(s, "monthly_cost", None)
        out.append((str(title), "" if cost in (None, "") else str(cost)))
    return out


class SetupScreen(Screen):
    BINDINGS = [Binding("escape", "close", "Back", id="setup-back")]

    def __init__(self, sandbox: bool = False):
        super().__init__(id="setup")
        self.sandbox = sandbox

    def compose(self) -> ComposeResult:
        yield TopBar("zdd-tui · setup", "", self.sandbox)
        with VerticalScroll(id="setup-body"):
            yield Label("DigitalOcean API token", classes="pane-title")
            yield Static(
                "Stored in the OS keyring, never in a file. Create one at "
                "cloud.digitalocean.com/account/api/tokens (read+write).",
                classes="hint",
            )
            with Horizontal(id="token-row"):
                yield Input(password=True, placeholder="dop_v1_…", id="token")
                yield Button("Save", id="save-token", variant="primary")
            yield Label("Steps", classes="pane-title")
            yield Static("", id="steps")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#steps", Static).focus()
        self.show_steps()

    def show_steps(self) -> None:
        config = getattr(self.app.source, "config", None)
        steps = None
        try:
            from zdd_tui.config import Config

            steps = load_steps(config or Config())
        except Exception as exc:
            self.query_one("#steps", Static).update(f"✖ could not list the setup steps: {exc}")
            return
        if steps is None:
            self.query_one("#steps", Static).update("The setup steps are not available in this build (zdd_tui.setup).")
            return
        t = Text()
        total = 0.0
        for i, (title, cost) in enumerate(steps, 1):
            t.append(f"{i:>2}. {title}")
            if cost:
                t.append(f"  ({cost})", style=theme_style(self.app, "warning"))
            t.append("\n")
        self.query_one("#steps", Static).update(t)

    @on(Button.Pressed, "#save-token")
    @on(Input.Submitted, "#token")
    def _save(self) -> None:
        box = self.query_one("#token", Input)
        value = box.value.strip()
        box.value = ""  # never keep the token on screen or in the widget longer than needed
        if not value:
            self.app.notify("Paste a token first.", severity="warning")
            return
        self.save_token(value)

    @work(exclusive=True, group="setup", exit_on_error=False, thread=True)
    def save_token(self, value: str) -> None:
        try:
            from zdd_tui.secrets import set_token

            context = getattr(getattr(self.app.source, "config", None), "context", "default")
            set_token(context, value)
        except Exception as exc:  # message only: the exception text never includes the token
            self.app.call_from_thread(self.app.notify, f"Could not store the token: {type(exc).__name__}", severity="error")
            return
        self.app.call_from_thread(self.app.notify, "Token stored in the keyring.")

    def action_close(self) -> None:
        self.app.pop_screen()
