"""Yes/no dialogs: deploy plan, rollback, quit during a rollout."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Label, Static

if TYPE_CHECKING:
    from zdd_tui.ui.app import ZddApp


class PausingModal(ModalScreen):
    """A modal that pauses the fleet poller while it is on top. (Resume/suspend rather than
    mount/unmount: an installed screen, like help, is mounted once and shown many times.)"""

    app: ZddApp  # Textual's property, typed as this console's app

    def on_screen_resume(self) -> None:
        self.app.modal_opened()

    def on_screen_suspend(self) -> None:
        self.app.modal_closed()


class ConfirmScreen(PausingModal):
    """`body` may be a str or Rich Text. Dismisses with True (yes) or False (no); with `other`
    (a third button's words, key o), "other"."""

    BINDINGS = [
        Binding("y", "yes", "Yes", show=False),
        Binding("n", "no", "No", show=False),
        Binding("o", "other", "Other", show=False),
        Binding("escape", "no", "Cancel"),
    ]

    def __init__(self, title: str, body: str | Text, yes: str = "Confirm", no: str = "Cancel", danger: bool = False,
                 other: str | None = None):
        super().__init__(classes="confirm")
        self._title, self._body, self._yes, self._no, self._danger = title, body, yes, no, danger
        self._other = other

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            # Text, not markup: titles and bodies name tags, hosts and fingerprints from outside.
            yield Label(Text(self._title), id="dialog-title")
            with VerticalScroll(id="dialog-body"):
                yield Static(Text(self._body) if isinstance(self._body, str) else self._body)
            with Horizontal(id="dialog-buttons"):
                if self._other:
                    yield Button(f"{self._other}… (o)", id="other")
                yield Button(f"{self._yes} (y)", id="yes", variant="error" if self._danger else "primary")
                yield Button(f"{self._no} (n)", id="no")

    def on_mount(self) -> None:
        # (Textual also calls PausingModal.on_mount: handlers run for every class in the MRO.)
        # Focus "no" for dangerous questions, so a stray Enter never quits a rollout.
        self.query_one("#no" if self._danger else "#yes", Button).focus()

    @on(Button.Pressed, "#yes")
    def action_yes(self) -> None:
        self.dismiss(True)

    @on(Button.Pressed, "#other")
    def action_other(self) -> None:
        if self._other:
            self.dismiss("other")

    @on(Button.Pressed, "#no")
    def action_no(self) -> None:
        self.dismiss(False)
