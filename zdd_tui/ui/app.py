"""The console app: owns the data source, the poller and the fleet state; screens render them.

Data flows one way: the poller (a worker) posts FleetData messages, the app folds them into
`self.fleet` and tells the dashboard which pane changed. Rollouts run in an exclusive worker on
the rollout screen; engine events come back as Emitted messages.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

from textual import on, work
from textual.app import App, SystemCommand
from textual.screen import Screen
from textual.theme import Theme

from zdd_tui.project import SystemClock
from zdd_tui.text import visible
from zdd_tui.ui import keys
from zdd_tui.ui.crash import Crashed, write_report
from zdd_tui.ui.messages import FleetData, SourceFailed, SourceReady
from zdd_tui.ui.poller import Poller
from zdd_tui.ui.settings import DEFAULT_THEME, NO_COLOR_THEME, ThemeSpec, UiSettings, load_theme_specs, no_color
from zdd_tui.ui.source import FleetSource, RunHandle
from zdd_tui.ui.state import FleetState

Opener = Callable[[], Awaitable[FleetSource]]


def to_theme(spec: ThemeSpec) -> Theme:
    c = spec.colors
    variables = dict(spec.variables)
    # Variables the stylesheet uses beyond Textual's own; a user theme may leave them out.
    variables.setdefault("sandbox-label", c.get("warning") or c.get("accent") or c["primary"])
    return Theme(
        name=spec.name, primary=c["primary"], secondary=c.get("secondary"), accent=c.get("accent"),
        foreground=c.get("foreground"), background=c.get("background"), surface=c.get("surface"),
        panel=c.get("panel"), boost=c.get("boost"), success=c.get("success"), warning=c.get("warning"),
        error=c.get("error"), dark=spec.dark, ansi=spec.ansi, variables=variables,
    )


def check_theme(name: str, specs: dict[str, ThemeSpec]) -> None:
    """--theme NAME must name a theme we have (ours, the user's, or one of Textual's)."""
    from textual.theme import BUILTIN_THEMES

    if name not in specs and name not in BUILTIN_THEMES:
        from zdd_tui.errors import UsageError
        from zdd_tui.ui.settings import user_themes_dir

        raise UsageError(
            f"unknown theme '{name}'",
            hint=f"themes: {', '.join(sorted(specs))} (add your own in {user_themes_dir()})",
        )


def _freeze_long_lived() -> None:
    """Once the console runs with its data (modules, the app, the dashboard, the session: what
    lives as long as the process), move it out of the collector's reach, so full collections
    stop walking it again and again: with 200 hosts streaming they were pauses of 100 ms and
    more. Screens that come and go (a rollout's) are made later and collected as usual."""
    import gc

    gc.freeze()


class ZddApp(App[int]):
    CSS_PATH = Path(__file__).parent / "app.tcss"  # absolute: subclasses live elsewhere
    TITLE = "zdd-tui"
    BINDINGS = keys.bindings("app")

    def __init__(
        self,
        source: FleetSource | None = None,
        *,
        open_source: Opener | None = None,
        open_sandbox: Opener | None = None,
        settings: UiSettings | None = None,
        theme: str | None = None,
        first_run: bool = False,
        poll: str = "live",  # live | once (snapshot tests: one deterministic fetch, no loop)
        clock: Any = None,
        theme_specs: dict[str, ThemeSpec] | None = None,
        handle_signals: bool = False,
    ):
        super().__init__()
        self.source = source
        self._open_source = open_source
        self._open_sandbox = open_sandbox
        self.settings = settings or UiSettings()
        self.first_run = first_run
        self.poll_mode = poll
        self.poll_clock = clock or SystemClock()
        self.fleet = FleetState()
        self.poller: Poller | None = None
        self.rollout: RunHandle | None = None  # the rollout this console runs, if any
        self.quit_when_done = False
        self._modal_depth = 0
        self._gc_frozen = False
        self._specs = theme_specs if theme_specs is not None else load_theme_specs()
        self.zdd_themes = [s.name for s in self._specs.values()]
        self._theme_wanted = theme or self.settings.theme or (NO_COLOR_THEME if no_color() else DEFAULT_THEME)
        self.failure: str | None = None
        self.crashed: Crashed | None = None  # the error that stopped the app, reported as Crashed
        self._handle_signals = handle_signals
        # Register before the first stylesheet parse: app.tcss uses our themes' own variables.
        for spec in self._specs.values():
            self.register_theme(to_theme(spec))
        if self._theme_wanted in self.available_themes:
            self.theme = self._theme_wanted
        elif DEFAULT_THEME in self.available_themes:
            self.theme = DEFAULT_THEME

    # -- an error nobody caught --------------------------------------------------------------
    def _handle_exception(self, error: Exception) -> None:
        # Textual's handler would print a traceback with every frame's locals (a token may be
        # one): the traceback goes to a private file, and Textual prints our one line instead.
        # (Every error Textual catches, in a handler, a worker or a paint, comes through here.)
        if self.crashed is not None:
            return  # the app is closing already; the first error is the one reported
        if isinstance(error, Crashed):
            crashed = error
        else:
            crashed = Crashed(error, write_report(error))
            crashed.__cause__ = error  # a test run (Pilot) re-raises Crashed: the original shows below it
        self.crashed = crashed
        super()._handle_exception(crashed)

    def run(self, *args: Any, **kwargs: Any) -> int | None:
        result = super().run(*args, **kwargs)
        if self.crashed is not None:
            import sys

            print(self.crashed.details(), file=sys.stderr)
        return result

    # -- start-up ----------------------------------------------------------------------------
    def get_css_variables(self) -> dict[str, str]:
        # Any theme (a user's, Textual's built-ins via the palette) gets the stylesheet's own
        # variables, derived from its colours.
        variables = super().get_css_variables()
        if "sandbox-label" not in variables:
            variables["sandbox-label"] = variables["warning"]
            self.theme_variables = variables
        return variables

    def on_mount(self) -> None:
        if self._handle_signals:
            # A closed terminal (SIGHUP) or a polite kill: stop like `q` but without asking
            # (nobody is there to answer): a running rollout settles its current step first.
            import signal

            loop = asyncio.get_running_loop()
            for sig in (signal.SIGHUP, signal.SIGTERM):
                loop.add_signal_handler(sig, self.request_exit)
        self.theme_changed_signal.subscribe(self, self._theme_changed)
        if self.settings.keymap:
            self.set_keymap(self.settings.keymap)
        if self.first_run and self.source is None:
            from zdd_tui.ui.screens.welcome import WelcomeScreen

            self.push_screen(WelcomeScreen())
        else:
            self.show_dashboard()

    def show_dashboard(self) -> None:
        from zdd_tui.ui.screens.dashboard import DashboardScreen

        sandbox = bool(self.source.sandbox) if self.source else self._open_source is self._open_sandbox
        if isinstance(self.screen, Screen) and self.screen.id == "welcome":
            self.switch_screen(DashboardScreen(sandbox=sandbox))
        else:
            self.push_screen(DashboardScreen(sandbox=sandbox))
        if self.source is not None:
            self.post_message(SourceReady())
        else:
            # After the first frame: opening the source imports and connects, which would
            # otherwise hold the dashboard's first paint back.
            self.call_after_refresh(self.open_source)

    def choose_sandbox(self) -> None:
        """Welcome screen: "Try the local sandbox"."""
        self._open_source = self._open_sandbox
        self.show_dashboard()

    @work(exclusive=True, group="source", exit_on_error=False)
    async def open_source(self) -> None:
        if self._open_source is None:
            self.post_message(SourceFailed("no project: run 'zdd-tui init' or start with --sandbox"))
            return
        try:
            self.source = await self._open_source()
        except Exception as exc:  # noqa: BLE001 - shown on screen, the app stays usable (help, quit, setup)
            self.post_message(SourceFailed(visible(str(exc).splitlines()[0]) if str(exc) else type(exc).__name__))
            return
        self.post_message(SourceReady())

    @on(SourceReady)
    def _source_ready(self) -> None:
        dash = self.dashboard
        if dash is not None and self.source is not None:
            dash.source_ready(self.source)
        self.start_polling()

    @on(SourceFailed)
    def _source_failed(self, message: SourceFailed) -> None:
        self.failure = message.text
        dash = self.dashboard
        if dash is not None:
            dash.show_failure(message.text)

    @property
    def dashboard(self):
        from zdd_tui.ui.screens.dashboard import DashboardScreen

        for s in self.screen_stack:
            if isinstance(s, DashboardScreen):
                return s
        return None

    # -- polling -----------------------------------------------------------------------------
    def start_polling(self) -> None:
        assert self.source is not None
        src = self.source
        self.poller = Poller(
            tasks=src.tasks(),
            sink=self._sink,
            request_counter=lambda: src.requests_made,
            clock=self.poll_clock,
        )
        if self._modal_depth:
            self.poller.pause()
        self._poll()

    def _sink(self, task: str, result: Any, error: BaseException | None) -> None:
        self.post_message(FleetData(task, result, error))

    @work(exclusive=True, group="poll", exit_on_error=False)
    async def _poll(self) -> None:
        assert self.poller is not None
        if self.poll_mode == "once":
            await self.poller.run_once()
            return
        await self.poller.run()

    @on(FleetData)
    def _fleet_data(self, message: FleetData) -> None:
        if not self._gc_frozen:
            self._gc_frozen = True
            self.call_after_refresh(_freeze_long_lived)
        self.fleet.apply(message.task, message.result, message.error)
        if self.source is not None:
            self.fleet.rate_limit = self.source.rate_limit
            self.fleet.requests_made = self.source.requests_made
        dash = self.dashboard
        if dash is not None:
            dash.fleet_changed(message.task)

    def modal_opened(self) -> None:
        """Dialogs pause polling: nothing repaints behind them and no request is spent."""
        self._modal_depth += 1
        if self.poller:
            self.poller.pause()

    def modal_closed(self) -> None:
        self._modal_depth = max(0, self._modal_depth - 1)
        if self.poller and self._modal_depth == 0:
            self.poller.resume()

    def budget_used(self) -> int:
        if not self.poller:
            return 0
        return self.poller.budget.used(self.poller.clock.now())

    # -- actions -----------------------------------------------------------------------------
    def action_next_theme(self) -> None:
        names = self.zdd_themes or [self.theme]
        i = names.index(self.theme) if self.theme in names else -1
        self.theme = names[(i + 1) % len(names)]
        self.notify(f"theme: {self.theme}", timeout=2, markup=False)

    def _theme_changed(self, theme) -> None:
        # Cells are Rich text coloured from theme variables: repaint them in the new colours
        # (on the signal, which fires once the new variables are in place).
        for s in self.screen_stack:
            repaint = getattr(s, "theme_changed", None)
            if repaint:
                repaint()

    def action_help(self) -> None:
        from zdd_tui.ui.screens.help import HelpScreen

        if isinstance(self.screen, HelpScreen):
            return
        # One help screen for the whole session: opening it again costs no composing, and
        # leaves no screen's worth of garbage for the collector each time.
        if not self.is_screen_installed("help"):
            self.install_screen(HelpScreen(), "help")
        self.push_screen("help")

    def action_quit_app(self) -> None:
        from zdd_tui.ui.screens.confirm import ConfirmScreen

        if self.rollout is None:
            self.run_worker(self.shutdown(), exclusive=True, group="quit")
            return
        if self.rollout.cancel.is_set():
            self.notify("Stopping: the current step is being finished or restored.", timeout=3, markup=False)
            return

        def answer(yes: bool | None) -> None:
            if yes and self.rollout is not None:
                self.quit_when_done = True
                self.rollout.cancel.set()
                self.notify("Stopping after the current step; the journal records it.", timeout=5, markup=False)

        self.push_screen(
            ConfirmScreen(
                "Quit during a rollout?",
                "A rollout is running. Quitting stops it safely: the host being changed is "
                "finished or put back on its previous version, the others are not touched, "
                "and the journal records what happened.",
                yes="Stop and quit",
                no="Keep running",
                danger=True,
            ),
            answer,
        )

    def request_exit(self) -> None:
        self._signalled = True
        if self.rollout is None:
            self.run_worker(self.shutdown(), exclusive=True, group="quit")
        else:
            self.quit_when_done = True
            self.rollout.cancel.set()

    async def shutdown(self) -> None:
        if self.poller:
            self.poller.stop()
        if self.source is not None:
            try:
                await self.source.close()  # stops the sandbox child and its hosts, if any
            except Exception:  # noqa: BLE001 - quitting goes on whatever the source says
                pass
        if getattr(self, "_signalled", False):
            # The terminal may be gone (SIGHUP): restoring it can block forever. Everything we
            # started is stopped by now, so if a normal exit has not happened in 3 s, force it.
            import os
            import threading

            timer = threading.Timer(3.0, os._exit, args=(0,))
            timer.daemon = True  # a normal exit does not wait for it
            timer.start()
        self.exit(0)

    def start_rollout(self, plan) -> None:
        from zdd_tui.ui.screens.rollout import RolloutScreen

        self.rollout = RunHandle(plan, asyncio.Event())
        if self.poller:
            self.poller.set_rollout(True)
        where = self.source.label if self.source else ""
        sandbox = bool(self.source and self.source.sandbox)
        self.push_screen(RolloutScreen(plan, self.rollout.cancel, sandbox=sandbox, where=where))

    def rollout_finished(self) -> None:
        self.rollout = None
        if self.poller:
            self.poller.set_rollout(False)
            self.poller.poke("droplets", "hosts", "lb_health", "tags", "rollout", "history", "traffic")
        if self.quit_when_done:
            self.run_worker(self.shutdown(), exclusive=True, group="quit")

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        for k in keys.KEYS:
            target = screen if k.scope != "app" and not k.action.startswith("app.") else self
            action = getattr(target, f"action_{k.action.removeprefix('app.')}", None)
            if action is not None:
                yield SystemCommand(k.description, k.help, action)
        for name in self.zdd_themes:
            yield SystemCommand(
                f"Theme: {name}", f"Switch the colour theme to {name}", lambda n=name: setattr(self, "theme", n)
            )
