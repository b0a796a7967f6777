"""The rollout view: the plan, a row per host with its bar and health (local-swap: the proxy's
health and the slot and tag it sends traffic to; the fleet's traffic across the rollout with each
switch marked, and the canary's soak), the log, the outcome."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import ProgressBar, Static

from zdd_tui.events import LogLine
from zdd_tui.rollout.events import (
    CanaryReport,
    CanaryUpdate,
    Outcome,
    OutcomeStatus,
    Plan,
    Progress,
    RolloutFinished,
    RolloutPlanned,
    TrafficSampled,
)
from zdd_tui.ui import keys
from zdd_tui.ui.graph import RolloutGraph, RolloutTraffic, canary_text
from zdd_tui.ui.messages import Emitted, Relay, RolloutReturned
from zdd_tui.ui.state import HostRow, adoption_words, human_elapsed
from zdd_tui.ui.widgets import HostTable, KeyFooter, LogView, TopBar, theme_style

if TYPE_CHECKING:
    from zdd_tui.ui.app import ZddApp

LOG_LINES = 2000
FLUSH_SECONDS = 0.1  # engine events are painted in batches, at most 10 times a second


class RolloutScreen(Screen):
    app: ZddApp  # Textual's property, typed as this console's app

    BINDINGS = keys.bindings("rollout")
    AUTO_FOCUS = "#hosts"  # arrow keys scroll the hosts

    def __init__(self, plan: Plan, cancel: asyncio.Event, sandbox: bool = False, where: str = ""):
        super().__init__(id="rollout")
        self.plan = plan
        self.cancel = cancel
        self.sandbox = sandbox
        self.where = where
        self.outcome: Outcome | None = None
        self.rows: dict[str, HostRow] = {}
        self.events_seen = 0
        self._relay = Relay(self)
        self._pending: list = []
        self._flush_scheduled = False
        self._stale: set[str] = set()  # rows whose model changed but are not painted yet
        # While a dialog (help, a confirmation) is over this view, the models still follow the
        # engine but painting waits: each repaint of a screen under a modal makes Textual redraw
        # the modal over a tinted copy of it (~the whole terminal), which starves keys.
        self._log_backlog: list[tuple[str, str, str | None]] = []
        self._overall: float | None = None
        self.traffic = RolloutTraffic()
        self.canary: CanaryReport | None = None  # the canary's latest comparison
        self._pictures_stale = False

    def compose(self) -> ComposeResult:
        yield TopBar("zdd-tui · rollout", self.where, self.sandbox)
        yield Static(self._plan_text(), id="plan")
        yield ProgressBar(total=1.0, show_eta=False, id="overall")
        swap = self.plan.strategy == "local-swap"
        for h in self.plan.hosts:
            # A host with a proxy already: its active slot and what that serves, as last polled.
            seen = self.app.fleet.hosts.get(h.name) if swap else None
            if seen is not None and seen.proxied:
                self.rows[h.name] = HostRow(h.name, h.from_tag, swap=True, slot=seen.active_slot, serving=seen.tag)
            else:
                self.rows[h.name] = HostRow(h.name, h.from_tag, swap=swap)
        yield HostTable(self.rows, id="hosts")
        # The proxies count the traffic: local-swap rollouts only.
        yield Static(Text(self.traffic.summary()), id="traffic-summary", classes="-shown" if swap else "")
        yield RolloutGraph(self.traffic, id="graph", classes="-shown" if swap else "")
        yield Static(self._canary_text(), id="canary", classes="-shown" if self.plan.canary_hosts else "")
        yield LogView(LOG_LINES, id="log")
        yield Static("", id="outcome")
        yield KeyFooter()

    def _plan_text(self) -> Text:
        p = self.plan
        verb = "Rolling back" if p.action == "rollback" else "Deploying"
        mins, secs = divmod(int(p.estimated_seconds), 60)
        t = Text()
        t.append(f"{verb} to {p.to_tag}", style="bold")
        t.append(f" ({p.strategy})  ·  {len(p.hosts)} host(s) in {len(p.batches)} batch(es) of ≤{p.batch_size}")
        t.append(f"  ·  estimate {mins}m{secs:02d}s\n")
        if p.adopt:
            t.append(f"First proxy on {adoption_words(p)}\n")
        t.append(f"{p.image_ref}  ·  rollout {p.rollout_id}", style=theme_style(self.app, "foreground-muted"))
        return t

    def _canary_text(self) -> Text:
        p = self.plan
        if self.canary is None:
            warmup = self.app.source.config.deploy.canary.warmup_seconds if self.app.source is not None else 0
            warm = f"a {warmup}s warm-up (not judged) and " if warmup else ""
            return Text(f"◷ Canary: {', '.join(p.canary_hosts)} will serve {p.to_tag} alone for "
                        f"{warm}{p.canary_seconds:.0f}s once switched, and be judged against the hosts still on "
                        "the old version")
        r = self.canary
        from_tag = next((h.from_tag for h in p.hosts if h.name in r.baseline_hosts),
                        next((h.from_tag for h in p.hosts if h.name in r.canary_hosts), None))
        assert self.app.source is not None  # a rollout runs only once connected
        styles = {var: theme_style(self.app, var, bold=var != "muted") for var in ("success", "warning", "error")}
        styles["muted"] = theme_style(self.app, "foreground-muted")
        return canary_text(r, self.app.source.config.deploy.canary, p.to_tag, from_tag, styles)

    def _paint_pictures(self) -> None:
        if not self._pictures_stale or self._covered() or not self.is_mounted:
            return
        self._pictures_stale = False
        self.query_one("#traffic-summary", Static).update(Text(self.traffic.summary()))
        self.query_one("#graph", RolloutGraph).refresh()
        canary = self.query_one("#canary", Static)
        canary.update(self._canary_text())
        canary.set_class(bool(self.plan.canary_hosts) or self.canary is not None, "-shown")

    def on_mount(self) -> None:
        self.set_class(self.plan.strategy == "local-swap", "-swap")
        self.set_interval(1.0, self._tick)
        self.run_rollout()

    def theme_changed(self) -> None:
        self._stale |= set(self.rows)
        self.paint_visible()
        self.query_one("#plan", Static).update(self._plan_text())
        self._pictures_stale = True
        self._paint_pictures()
        if self.outcome is not None:
            self._show_outcome(self.outcome)

    def _covered(self) -> bool:
        try:
            return self.app.screen is not self
        except Exception:  # noqa: BLE001 - no screen stack (the app is shutting down): nothing to paint over
            return False

    def on_screen_resume(self) -> None:
        self.paint_visible()
        self._paint_log_and_overall()
        self._paint_pictures()

    def paint_visible(self) -> None:
        """Repaint the host lines if any line in view changed (lines out of view are drawn when
        scrolled to, from the current model)."""
        if not self._stale or not self.is_mounted or self._covered():
            return
        table = self.query_one("#hosts", HostTable)
        table.refresh_rows(self._stale)  # only the changed lines in view, not the whole table
        self._stale.clear()

    def _tick(self) -> None:
        now = self.app.source.now() if self.app.source else 0.0
        for row in self.rows.values():
            if row.started_at is not None and row.ended_at is None:
                row.tick(now)
                self._stale.add(row.host)
        self.paint_visible()

    @work(exclusive=True, group="rollout", exit_on_error=False)
    async def run_rollout(self) -> None:
        source = self.app.source
        try:
            assert source is not None  # the dashboard starts a rollout only once connected
            outcome = await source.run(self.plan, self._relay, self.cancel)
        except Exception as exc:  # noqa: BLE001 - the engine's own errors become an outcome on screen
            outcome = Outcome(OutcomeStatus.ERROR, f"{type(exc).__name__}: {exc}", self.plan.to_tag)
        self._relay.send()  # the engine's last events before the message below
        # Only now (the engine returned: lock released, journal closed) may the app quit.
        self.post_message(RolloutReturned(outcome))

    @on(Emitted)
    def _events(self, message: Emitted) -> None:
        # Queue them; a flush paints the batch, at most 10 times a second.
        self._pending.extend(message.events)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.set_timer(FLUSH_SECONDS, self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        events, self._pending = self._pending, []
        if not events or not self.is_mounted:
            return
        dirty: set[str] = set()
        log_lines: list[tuple[str, str, str | None]] = []
        overall = None
        finished = None
        for ev in events:
            self.events_seen += 1
            at = ev.at or 0.0  # the engine stamps every event
            row = self.rows.get(getattr(ev, "host", None) or "")
            if row is not None and row.apply(ev):
                dirty.add(row.host)
            if self.traffic.add(ev):
                self._pictures_stale = True
            if isinstance(ev, TrafficSampled):
                if self.app.source is not None:  # the dashboard's sparklines go on from the engine's readings
                    self.app.source.traffic_seen(ev)
            elif isinstance(ev, CanaryUpdate):
                self.canary = ev.report
                self._pictures_stale = True
            elif isinstance(ev, Progress):
                overall = ev.overall
            elif isinstance(ev, LogLine):
                log_lines.append((f"{human_elapsed(at - self._t0(at))} {ev.host or '-':<12} ", ev.line, ev.level))
            elif isinstance(ev, RolloutPlanned):
                self._start_at = self.traffic.start = at
            elif isinstance(ev, RolloutFinished):
                finished = ev.outcome
        self._stale |= dirty
        self.paint_visible()
        if log_lines:
            self._log_backlog.extend(log_lines)
            del self._log_backlog[:-LOG_LINES]
        if overall is not None:
            self._overall = overall
        self._paint_log_and_overall()
        self._paint_pictures()
        if finished is not None:
            self.outcome = finished
            if finished.status is OutcomeStatus.SUCCESS:
                self._overall = None  # a held-back value must not undo the 100% on resume
                self.query_one("#overall", ProgressBar).update(progress=1.0)
            self._show_outcome(finished)

    def _paint_log_and_overall(self) -> None:
        if self._covered() or not self.is_mounted:
            return
        if self._log_backlog:
            lines, self._log_backlog = self._log_backlog, []
            self.query_one("#log", LogView).write_entries(lines)
        if self._overall is not None:
            overall, self._overall = self._overall, None
            self.query_one("#overall", ProgressBar).update(progress=overall)

    @on(RolloutReturned)
    def _returned(self, message: RolloutReturned) -> None:
        self._flush()
        if self.outcome is None:  # the engine returned without a finished event
            self._pending.append(RolloutFinished(message.outcome))
            self._flush()
        self.app.rollout_finished()

    def _t0(self, at: float) -> float:
        if not hasattr(self, "_start_at"):
            self._start_at = at
        return self._start_at

    def _show_outcome(self, o: Outcome) -> None:
        box = self.query_one("#outcome", Static)
        var = {
            OutcomeStatus.SUCCESS: "success",
            OutcomeStatus.HALTED: "warning",
            OutcomeStatus.INTERRUPTED: "warning",
        }.get(o.status, "error")
        glyph = {"success": "✔", "warning": "◐"}.get(var, "✖")
        t = Text()
        t.append(f"{glyph} {o.status.value.upper()}: ", style=theme_style(self.app, var, bold=True))
        # The engine's message ends with the fleet as "a=x, b=y"; the box says it once, grouped.
        t.append(o.message.partition(" | fleet now: ")[0])
        if o.failed_host:
            t.append(f"\n  failed: {o.failed_host} while {o.failed_step.words if o.failed_step else '?'}")
            if o.seen:
                t.append(f"; seen: {o.seen}")
        if o.status is OutcomeStatus.HALTED:
            t.append(f"\n  restored: {'yes, it runs its previous version again' if o.restored else 'NO, see the log'}")
        if o.fleet:
            runs: dict[str, list[str]] = {}
            for host, tag in sorted(o.fleet.items()):
                runs.setdefault(tag or "nothing", []).append(host)
            t.append("\n  fleet now: " + "; ".join(
                f"{tag} on {len(hs)} ({', '.join(hs[:4])}{' …' if len(hs) > 4 else ''})" for tag, hs in runs.items()
            ))
        t.append(f"\n  took {human_elapsed(o.duration_seconds)}.  Esc: back to the dashboard")
        box.update(t)
        box.set_class(True, "-shown")
        box.set_class(o.status is not OutcomeStatus.SUCCESS, "-bad")

    def action_back(self) -> None:
        if self.outcome is None:
            self.app.notify("The rollout is running; q stops it safely.", timeout=3, markup=False)
            return
        self.app.pop_screen()


