"""The dashboard: droplets, load balancer, registry tags; live, never blocking input."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.css.query import NoMatches
from textual.screen import Screen
from textual.widgets import Input, Label, Static

from zdd_tui.config import key_for
from zdd_tui.errors import ZddError
from zdd_tui.project import DEPLOY_RULE
from zdd_tui.rollout.events import Plan
from zdd_tui.text import visible
from zdd_tui.ui import keys
from zdd_tui.ui.state import (
    DROPLET_COLUMNS,
    LB_COLUMNS,
    TAG_COLUMNS,
    Health,
    adoption_words,
    droplet_rows,
    fleet_health_counts,
    lb_rows,
    lb_summary,
    rate_limit_text,
    tag_rows,
)
from zdd_tui.ui.traffic import TrafficGrid
from zdd_tui.ui.widgets import FleetTable, KeyFooter, KeyValue, TopBar, theme_style

if TYPE_CHECKING:
    from zdd_tui.ui.app import ZddApp

# Which panes each poll task feeds.
_PANES = {
    "droplets": ("droplets", "lb", "tags", "traffic"),
    "hosts": ("droplets", "tags"),
    "lb": ("lb",),
    "lb_health": ("lb",),
    "tags": ("tags",),
    "rollout": ("banner",),
    "history": ("tags",),
    "labels": ("tags", "hint"),
    "traffic": ("traffic",),
}
SANDBOX_HINT = ("Sandbox: tags marked 'fails health', 'crashes', 'slow' or '5% errors' misbehave on purpose; "
                "deploy one (d, o) to watch a rollout halt and restore the previous version.")


def _table_id(box: Input) -> str:
    """The id of the table a filter box filters: `droplets-filter` filters `droplets`."""
    assert box.id is not None  # every filter box is made with one
    return box.id.removesuffix("-filter")


class FilterInput(Input):
    """The `/` filter of one table. Esc clears it; Enter goes back to the table."""

    BINDINGS = [Binding("escape", "clear", "Clear filter")]

    def action_clear(self) -> None:
        self.value = ""
        self.remove_class("-active")
        table = self.screen.query_one(f"#{_table_id(self)}", FleetTable)
        table.set_filter("")
        table.focus()


class DashboardScreen(Screen):
    app: ZddApp  # Textual's property, typed as this console's app

    BINDINGS = keys.bindings("dashboard")

    def __init__(self, sandbox: bool = False):
        super().__init__(id="dashboard")
        self.sandbox = sandbox
        # Panes whose data changed but are not painted yet: poll results can arrive before the
        # panes exist (the screen is pushed, its tables not mounted); they are painted on mount.
        self._unpainted: set[str] = set()
        self._ready = False
        self._hinted = False
        self._traffic_waiting = False  # traffic came while another screen covered this one

    def compose(self) -> ComposeResult:
        yield TopBar("zdd-tui", "connecting…", self.sandbox)
        yield Static("", id="banner")
        with Vertical(id="droplets-pane", classes="pane"):
            yield Label("Droplets", classes="pane-title", id="droplets-title")
            yield FilterInput(placeholder="filter droplets…", id="droplets-filter", classes="filter")
            yield FleetTable(DROPLET_COLUMNS, id="droplets")
        with Vertical(id="traffic-pane", classes="pane") as pane:
            pane.border_title = "Traffic: requests/s and 5xx (✖) per droplet, last 5 minutes"
            yield TrafficGrid(id="traffic")
        with Horizontal(id="lower"):
            with Vertical(id="lb-pane", classes="pane"):
                yield Label("Load balancer", classes="pane-title")
                yield KeyValue(id="lb-summary")
                yield FilterInput(placeholder="filter…", id="lbhealth-filter", classes="filter")
                yield FleetTable(LB_COLUMNS, id="lbhealth")
            with Vertical(id="tags-pane", classes="pane"):
                yield Label("Registry tags (newest first)", classes="pane-title")
                yield FilterInput(placeholder="filter tags…", id="tags-filter", classes="filter")
                yield FleetTable(TAG_COLUMNS, id="tags")
        with Horizontal(id="status"):
            yield Label("", id="status-fleet")
            yield Label("", id="status-budget")
            yield Label("", id="status-rate")
            yield Label("", id="status-error")
        yield KeyFooter()

    def on_mount(self) -> None:
        self.query_one("#droplets", FleetTable).focus()
        self.query_one("#lb-summary", KeyValue).show(lb_summary(self.app.fleet))
        self._paint_status()
        # Whatever the app already knows (data that came before this screen was mounted), once
        # the tables have mounted too (they add their columns in their own on_mount).
        self.call_after_refresh(self._mounted)

    def on_screen_resume(self) -> None:
        if self._traffic_waiting and self._ready:
            self._traffic_waiting = False
            self.fleet_changed("traffic")

    def _mounted(self) -> None:
        self._ready = True
        self._unpainted |= {pane for panes in _PANES.values() for pane in panes}
        self._paint_unpainted()

    # -- data --------------------------------------------------------------------------------
    def source_ready(self, source) -> None:
        self.query_one(TopBar).set_where(source.label)

    def show_failure(self, text: str) -> None:
        self.query_one("#status-error", Label).update(Text(f"✖ {text}", style=theme_style(self.app, "error")))

    def fleet_changed(self, task: str) -> None:
        self._unpainted.update(_PANES.get(task, ()))
        if not self._ready or not self.is_attached:
            return  # not mounted yet (kept for on_mount), or the app is closing
        self._paint_unpainted()

    def _paint_unpainted(self) -> None:
        panes, self._unpainted = self._unpainted, set()
        try:
            for pane in sorted(panes):
                self._paint(pane)
            self._paint_status()
        except NoMatches:  # a pane is being mounted or removed: keep it for the next paint
            self._unpainted |= panes

    def _paint(self, pane: str) -> None:
        fleet = self.app.fleet
        if pane == "droplets":
            self.query_one("#droplets", FleetTable).sync(droplet_rows(fleet))
            n = len(fleet.droplets or [])
            title = f"Droplets ({n})" if fleet.droplets is not None else "Droplets (loading…)"
            self.query_one("#droplets-title", Label).update(title)
        elif pane == "lb":
            self.query_one("#lb-summary", KeyValue).show(lb_summary(fleet))
            self.query_one("#lbhealth", FleetTable).sync(lb_rows(fleet))
        elif pane == "tags" and self.app.source is not None:
            self.query_one("#tags", FleetTable).sync(tag_rows(fleet, self.app.source.wall_now()))
        elif pane == "traffic" and self.app.source is not None:
            if self.app.screen is not self:  # under the rollout view (a fleet's worth each second)
                self._traffic_waiting = True
                return
            names = [d.name for d in fleet.droplets or []]
            self.query_one("#traffic", TrafficGrid).sync(names, fleet.traffic, self.app.source.now())
        elif pane == "banner":
            self._paint_banner()
        elif pane == "hint" and fleet.tag_labels and not self._hinted:
            self._hinted = True  # once a session
            self.app.notify(SANDBOX_HINT, title="Try a failure", timeout=12)

    def _paint_banner(self) -> None:
        ro = self.app.fleet.rollout
        banner = self.query_one("#banner", Static)
        if ro is None:
            banner.remove_class("-active")
            banner.update("")
            return
        busy = ", ".join(f"{h}: {p}" for h, p in sorted(ro.phases.items())[:4])
        who = "this console" if ro.ours else ro.holder
        text = Text(f"▶ {ro.action} to {ro.to_tag} in progress, started by {who}", style="bold")
        if busy:
            text.append(f"  ·  {busy}")
        banner.update(text)
        banner.add_class("-active")

    def _paint_status(self) -> None:
        app = self.app
        fleet = app.fleet
        counts = fleet_health_counts(fleet)
        parts = Text()
        for h in (Health.OK, Health.DRAINING, Health.STARTING, Health.FAIL, Health.UNKNOWN):
            if counts.get(h):
                if parts:
                    parts.append("  ")
                parts.append(f"{h.glyph} {counts[h]} {h.word}", style=theme_style(app, h.theme_var))
        self.query_one("#status-fleet", Label).update(parts or Text("fleet: loading…"))
        used = app.budget_used()
        self.query_one("#status-budget", Label).update(f"budget {used}/40 req/min")
        self.query_one("#status-rate", Label).update(rate_limit_text(fleet.rate_limit))
        errors = fleet.errors
        if errors:
            task, text = sorted(errors.items())[0]
            error = Text(f"✖ {task}: {text}", style=theme_style(app, "error"))
            self.query_one("#status-error", Label).update(error)
        elif not app.failure:
            self.query_one("#status-error", Label).update("")

    def theme_changed(self) -> None:
        for t in self.query(FleetTable):
            t.repaint_all()
        self.query_one("#lb-summary", KeyValue).show(lb_summary(self.app.fleet))
        self._paint_status()

    # -- filter ------------------------------------------------------------------------------
    def action_filter(self) -> None:
        table = self.focused if isinstance(self.focused, FleetTable) else self.query_one("#droplets", FleetTable)
        box = self.query_one(f"#{table.id}-filter", FilterInput)
        box.add_class("-active")
        box.focus()

    @on(Input.Changed, ".filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.query_one(f"#{_table_id(event.input)}", FleetTable).set_filter(event.value)

    @on(Input.Submitted, ".filter")
    def _filter_done(self, event: Input.Submitted) -> None:
        if not event.value:
            event.input.remove_class("-active")
        self.query_one(f"#{_table_id(event.input)}", FleetTable).focus()

    # -- actions -----------------------------------------------------------------------------
    def _busy(self) -> bool:
        app = self.app
        if app.source is None:
            app.notify("Not connected yet.", severity="warning", markup=False)
            return True
        if app.rollout is not None:
            app.notify("A rollout is already running.", severity="warning", markup=False)
            return True
        ro = app.fleet.rollout
        if ro is not None and not ro.ours:
            # The holder and the tag are the hosts' lock file's words: never markup.
            app.notify(f"{ro.holder} holds the deploy lock ({ro.action} to {ro.to_tag}).", severity="warning",
                       markup=False)
            return True
        return False

    def action_deploy(self) -> None:
        if self._busy():
            return
        self.deploy_default()

    @work(exclusive=True, group="plan", exit_on_error=False)
    async def deploy_default(self) -> None:
        """`d`: the tag DEPLOY_RULE names, planned and confirmed (the dialog says why that tag)."""
        source = self.app.source
        assert source is not None  # _busy() checked it
        try:
            tag, why = await source.deploy_target(self.app.fleet.tags or [])
        except Exception as exc:  # noqa: BLE001 - shown; the dashboard goes on
            self.app.notify(visible(f"{type(exc).__name__}: {exc}"), title="deploy", severity="error", timeout=8,
                            markup=False)
            return
        if tag is None:
            self.app.notify(f"Nothing to deploy: {why}. Build and push one first (b).", severity="warning",
                            markup=False)
            return
        await self._plan_and_confirm("deploy", tag, why)

    def action_rollback(self) -> None:
        if self._busy():
            return
        self.pick("rollback")

    def pick(self, action: str, preselect: str | None = None, why: str = "") -> None:
        """The version picker; the chosen tag is planned and confirmed."""
        from zdd_tui.ui.screens.picker import VersionPicker

        def chosen(tag: str | None) -> None:
            if tag is not None and not self._busy():
                self.plan_and_confirm(action, tag)

        self.app.push_screen(VersionPicker(action, preselect, why), chosen)

    @work(exclusive=True, group="plan", exit_on_error=False)
    async def plan_and_confirm(self, action: str, tag: str) -> None:
        await self._plan_and_confirm(action, tag)

    async def _plan_and_confirm(self, action: str, tag: str, why: str = "") -> None:
        source = self.app.source
        try:
            assert source is not None  # _busy() checked it
            plan = await source.plan(action, tag)
        except ZddError as exc:
            self.app.notify(str(exc), title=f"{action} refused", severity="error", timeout=8, markup=False)
            return
        except Exception as exc:  # noqa: BLE001 - any other failure is shown too, the dashboard goes on
            self.app.notify(visible(f"{type(exc).__name__}: {exc}", newlines=True), title=f"{action} failed",
                            severity="error", timeout=8, markup=False)
            return
        if not plan.hosts:
            self.app.notify(f"Every host already runs {tag}: nothing to do.", timeout=4, markup=False)
            return
        from zdd_tui.ui.screens.confirm import ConfirmScreen

        def answer(yes: bool | str | None) -> None:
            if yes == "other":
                self.pick("deploy", tag, why)
            elif yes:
                self.app.start_rollout(plan)

        yes = "Deploy" if action == "deploy" else "Roll back"
        title, body = confirm_text(plan)
        if action == "deploy" and why:
            body = Text(f"Rule    {DEPLOY_RULE}\nHere    {why}\n") + body
        other = "Another tag" if action == "deploy" else None
        self.app.push_screen(ConfirmScreen(title, body, yes=yes, other=other), answer)

    def action_logs(self) -> None:
        name = self.query_one("#droplets", FleetTable).selected_key
        if name is None:
            self.app.notify("No droplet selected.", severity="warning", markup=False)
            return
        from zdd_tui.ui.screens.logs import LogsScreen

        self.app.push_screen(LogsScreen(name, sandbox=self.sandbox))

    def action_setup(self) -> None:
        from zdd_tui.ui.screens.setup import SetupScreen

        self.app.push_screen(SetupScreen(sandbox=self.sandbox))

    def action_build(self) -> None:
        from zdd_tui.ui.screens.build import BuildScreen

        if self._busy():
            return
        self.app.push_screen(BuildScreen(sandbox=self.sandbox))

    def action_refresh(self) -> None:
        if self.app.poller:
            self.app.poller.poke("droplets", "lb", "lb_health", "tags", "hosts", "rollout")


def confirm_text(plan: Plan) -> tuple[str, Text]:
    """The confirmation for a plan: names the tag, every host (with what it runs now and, for a
    host that gets its first proxy, how), the strategy, the batches and the estimate."""
    verb = "Roll back" if plan.action == "rollback" else "Deploy"
    n = len(plan.hosts)
    title = f"{verb} to {plan.to_tag} on {n} host{'s' if n != 1 else ''}?"
    swap = plan.strategy == "local-swap"
    body = Text()
    body.append(f"Image   {plan.image_ref}\n")
    what = dict(key_for("deploy.strategy").choices).get(plan.strategy, "")  # the config's own words
    body.append(f"How     {plan.strategy}" + (f": {what}" if what else "") + "\n")
    if swap:
        body.append(f"Batches {len(plan.batches)}: the first host alone, then at most {plan.batch_size} at a time\n")
    else:
        body.append(f"Batches {len(plan.batches)} of at most {plan.batch_size} host(s); "
                    "the LB always keeps a healthy droplet\n")
    if plan.adopt:
        body.append(f"Proxy   installed first on {adoption_words(plan)}\n")
    mins, secs = divmod(int(plan.estimated_seconds), 60)
    body.append(f"Takes   about {mins}m{secs:02d}s ({plan.estimate_basis})\n\n")
    adopt = dict(plan.adopt)
    shown = plan.hosts[:12]
    for h in shown:
        first = f"  (first proxy: {adopt[h.name]})" if h.name in adopt else ""
        body.append(f"  {h.batch + 1:>3}. {h.name:<14} {h.from_tag or 'nothing'} → {plan.to_tag}{first}\n")
    if n > len(shown):
        body.append(f"  … and {n - len(shown)} more host(s)\n")
    unchanged = getattr(plan, "unchanged", ())
    if unchanged:
        more = " …" if len(unchanged) > 6 else ""
        body.append(f"\nAlready on {plan.to_tag}, left alone: {', '.join(unchanged[:6])}{more}\n")
    if swap:
        body.append("\nA new version that never gets healthy is removed before the proxy switches to it; "
                    "the host keeps serving its version and the rollout halts.")
    else:
        body.append("\nA host that fails is put back on the version it ran before and the rollout halts.")
    return title, body
