"""First run (no token, no zdd.yaml): connect DigitalOcean, or try the local sandbox."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual import on
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import Button, Label, Static

from zdd_tui.ui.widgets import KeyFooter

if TYPE_CHECKING:
    from zdd_tui.ui.app import ZddApp


class WelcomeScreen(Screen):
    app: ZddApp  # Textual's property, typed as this console's app

    def __init__(self):
        super().__init__(id="welcome")

    def compose(self) -> ComposeResult:
        with Vertical(id="welcome-box"):
            yield Label("zdd-tui", id="welcome-title")
            yield Static(
                "Zero-downtime rolling deploys of a Docker service to DigitalOcean droplets behind "
                "a load balancer.\n\nNo project (zdd.yaml) and no DigitalOcean token were found.",
                id="welcome-text",
            )
            yield Button("Connect DigitalOcean", id="connect", variant="primary")
            yield Button("Try the local sandbox", id="sandbox")
            yield Static(
                "The sandbox runs a stand-in for DigitalOcean on this machine (API, load balancer, "
                "hosts): nothing is created in your account and nothing costs money.",
                id="welcome-foot",
            )
        yield KeyFooter()

    def on_mount(self) -> None:
        self.query_one("#sandbox", Button).focus()

    @on(Button.Pressed, "#connect")
    def _connect(self) -> None:
        from zdd_tui.ui.screens.setup import SetupScreen

        self.app.push_screen(SetupScreen(sandbox=False))

    @on(Button.Pressed, "#sandbox")
    def _sandbox(self) -> None:
        self.app.choose_sandbox()
