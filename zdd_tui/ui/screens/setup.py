"""`s`: the setup wizard (the steps of zdd_tui.setup, through zdd_tui.project): preview with costs, then apply.

The token Input is masked and not focused at start: a focused Input swallows single-key
bindings, so the screen opens on the step list; Tab (or a click) reaches the Input and Esc
leaves it. The typed token goes only to the Setup object (which keeps it in the keyring).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import Button, Input, Label, RichLog, Static

from zdd_tui.events import Event, HostReport
from zdd_tui.setup.events import StepDone, StepError, StepProgress, StepStarted
from zdd_tui.text import visible
from zdd_tui.ui.messages import Emitted, Relay
from zdd_tui.ui.widgets import KeyFooter, TopBar, theme_style

if TYPE_CHECKING:
    from zdd_tui.ui.app import ZddApp


class TokenInput(Input):
    BINDINGS = [Binding("escape", "leave", "Leave field")]

    def action_leave(self) -> None:
        self.screen.query_one("#steps", Static).focus()


class SetupScreen(Screen):
    app: ZddApp  # Textual's property, typed as this console's app

    BINDINGS = [
        Binding("escape", "close", "Back", id="setup-back"),
        Binding("p", "preview", "Preview costs", id="setup-preview"),
        Binding("a", "apply", "Apply steps", id="setup-apply"),
        # One step alone (e.g. add the load balancer to droplets made elsewhere): its number.
        *(
            Binding(str(i), f"apply_step({i})", f"Apply step {i}", show=False, id=f"setup-apply-{i}")
            for i in range(1, 7)
        ),
    ]

    def __init__(self, sandbox: bool = False):
        super().__init__(id="setup")
        self.sandbox = sandbox
        self._token: str | None = None  # only until the Setup object has it
        self._relay = Relay(self)

    def compose(self) -> ComposeResult:
        yield TopBar("zdd-tui · setup", "", self.sandbox)
        with VerticalScroll(id="setup-body"):
            yield Label("DigitalOcean API token", classes="pane-title")
            yield Static(
                "Kept in the OS keyring, never in a file. Create one at "
                "cloud.digitalocean.com/account/api/tokens (read and write). Tab to type, Esc to leave.",
                classes="hint",
            )
            with Horizontal(id="token-row"):
                yield TokenInput(password=True, placeholder="dop_v1_…", id="token")
                yield Button("Use token", id="save-token", variant="primary")
            yield Label(
                "Steps  (p: preview with costs · a: apply all · 1-6: apply one step; one confirmation per step)",
                classes="pane-title",
            )
            yield Static("", id="steps")
            yield RichLog(id="setup-log", wrap=True, markup=False, max_lines=500)
        yield KeyFooter()

    def on_mount(self) -> None:
        steps = self.query_one("#steps", Static)
        steps.can_focus = True
        steps.focus()
        self.show_steps({})

    def _config(self):
        config = getattr(self.app.source, "config", None)
        if config is None:
            from zdd_tui.config import Config

            config = Config()
        return config

    def show_steps(self, previews: dict) -> None:
        try:
            from zdd_tui.project.setup import setup_steps

            STEPS = setup_steps()
        except Exception as exc:  # noqa: BLE001 - said in place of the steps; the screen stays usable
            self.query_one("#steps", Static).update(Text(visible(f"The setup steps are not available: {exc}")))
            return
        t = Text()
        total = 0.0
        for i, spec in enumerate(STEPS, 1):
            t.append(f"{i}. {spec.title}", style="bold")
            p = previews.get(spec.id)
            if p is None:
                t.append(f"  {spec.description}\n", style=theme_style(self.app, "foreground-muted"))
                continue
            if isinstance(p, str):
                t.append(f"  ✖ {p}\n", style=theme_style(self.app, "error"))
                continue
            if not p.applies:
                t.append("  (does not apply here)\n", style=theme_style(self.app, "foreground-muted"))
                continue
            total += p.monthly_usd
            cost = f"  +${p.monthly_usd:.2f}/month" if p.monthly_usd else "  no added cost"
            t.append(cost + "\n", style=theme_style(self.app, "warning" if p.monthly_usd else "success"))
            for line in p.creates:
                t.append(f"     + {line}\n")
            for line in p.existing:
                t.append(f"     = {line} (exists, reused)\n", style=theme_style(self.app, "foreground-muted"))
            if p.cost_detail:
                t.append(f"     {p.cost_detail}\n", style=theme_style(self.app, "foreground-muted"))
        if previews:
            t.append(f"\nAdded monthly cost in total: ${total:.2f}", style="bold")
        self.query_one("#steps", Static).update(t)

    def _setup(self):
        from zdd_tui.project.setup import open_setup

        # A host seen for the first time: the operator is shown its key and decides.
        ask = {"accept_new_host_keys": self._ask_host_key}
        project = getattr(self.app.source, "project", None)
        if project is not None:  # the console's own connection, unless a token was typed in
            return project.setup(token=self._token, emit=self._relay, **ask)
        return open_setup(self._config(), token=self._token, emit=self._relay, **ask)

    async def _ask_host_key(self, host: str, port: int, fingerprint: str) -> bool:
        """Pin this new host key? (Asked from the setup worker, which waits for the answer.)"""
        from zdd_tui.ui.screens.confirm import ConfirmScreen

        body = Text()
        body.append(f"{host} (SSH port {port}) is not pinned yet. It presents the host key\n\n")
        body.append(f"    {fingerprint}\n\n", style="bold")
        body.append(
            "Compare it with the droplet's own: on its DigitalOcean web console run\n"
            "    for k in /etc/ssh/ssh_host_*_key.pub; do ssh-keygen -lf $k; done\n"
            "Accept pins it: from then on any other key from this host is refused. "
            "Refuse connects to nothing and pins nothing."
        )
        dialog = ConfirmScreen(f"Trust the SSH host key of {host}?", body, yes="Accept and pin", no="Refuse",
                               danger=True)
        return bool(await self.app.push_screen_wait(dialog))

    @on(Emitted)
    def _events(self, message: Emitted) -> None:
        log = self.query_one("#setup-log", RichLog)
        for ev in message.events:
            line = _event_line(ev)
            if line:
                log.write(line)

    @on(Button.Pressed, "#save-token")
    @on(Input.Submitted, "#token")
    def _use_token(self) -> None:
        box = self.query_one("#token", Input)
        value = box.value.strip()
        box.value = ""  # never left in the widget
        if not value:
            self.app.notify("Paste a token first.", severity="warning", markup=False)
            return
        self._token = value
        self.query_one("#steps", Static).focus()
        self.app.notify("Token taken; p previews, a applies (the token step checks and stores it).", markup=False)

    @work(exclusive=True, group="setup", exit_on_error=False)
    async def action_preview(self) -> None:
        from zdd_tui.project.setup import setup_steps

        STEPS = setup_steps()

        previews: dict = {}
        setup = self._setup()
        try:
            for spec in STEPS:
                try:
                    previews[spec.id] = await setup.preview(spec.id)
                except Exception as exc:  # noqa: BLE001 - e.g. no token yet: say so per step, go on
                    previews[spec.id] = visible(str(exc).splitlines()[0]) if str(exc) else type(exc).__name__
                self.show_steps(previews)
        finally:
            await setup.close()

    def action_apply_step(self, number: int) -> None:
        from zdd_tui.project.setup import setup_steps

        STEPS = setup_steps()

        if 1 <= number <= len(STEPS):
            self.action_apply(STEPS[number - 1].id)

    @work(exclusive=True, group="setup", exit_on_error=False)
    async def action_apply(self, only: str | None = None) -> None:
        from zdd_tui.ui.screens.confirm import ConfirmScreen

        async def confirm(preview) -> bool:
            body = Text()
            for line in preview.creates:
                body.append(f"+ {line}\n")
            body.append(f"\nAdds ${preview.monthly_usd:.2f}/month. {preview.cost_detail}")
            return bool(await self.app.push_screen_wait(ConfirmScreen(f"Setup: {preview.title}?", body, yes="Create")))

        setup = self._setup()
        log = self.query_one("#setup-log", RichLog)
        try:
            done = await setup.run(only=only, confirm=confirm)
            self._relay.after(log.write, f"✔ setup finished: {', '.join(f'{d.step} {d.status}' for d in done)}")
        except Exception as exc:  # noqa: BLE001 - shown in the log below the steps' events
            self._relay.after(log.write, visible(f"✖ {exc}", newlines=True))
        finally:
            await setup.close()
            self._token = None
            # Setup changes the account (even a run that stopped half-way): the dashboard
            # behind this screen shows it now, not at its next slow poll.
            poller = getattr(self.app, "poller", None)
            if poller:
                poller.poke("droplets", "lb", "lb_health", "tags", "hosts")

    def action_close(self) -> None:
        self._token = None
        self.app.pop_screen()


def _event_line(ev: Event) -> str:
    if isinstance(ev, StepStarted):
        return f"▶ {ev.title}"
    if isinstance(ev, StepProgress):
        return f"  {ev.message}"
    if isinstance(ev, StepDone):
        return f"✔ {ev.step}: {ev.status} {ev.detail}"
    if isinstance(ev, StepError):
        return f"✖ {ev.step}: {ev.message}" + (f" (hint: {ev.hint})" if ev.hint else "")
    if isinstance(ev, HostReport):
        return f"  {ev.host} {ev.address}: {'ok' if ev.ok else 'NOT ok'} {ev.checks}"
    return ""  # the preview is on screen already
