"""The version picker (`r`, and "another tag" from `d`'s plan): the versions that ran on this
fleet, newest first, then, below a separator, registry tags that never ran here."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import Label, OptionList, Static
from textual.widgets.option_list import Option

from zdd_tui.project import DEPLOY_RULE, Versions, describe, with_registry
from zdd_tui.text import visible
from zdd_tui.ui.screens.confirm import PausingModal

if TYPE_CHECKING:
    from zdd_tui.ui.app import ZddApp

NEVER_RAN = "never-ran"  # the id of the separator's heading (not selectable)
CURSOR = "▶ "  # the selected row's glyph: visible without colour (zdd-ansi, NO_COLOR)


class VersionPicker(PausingModal):
    """Dismisses with the chosen tag, or None. `action`: rollback | deploy (the words and
    which row starts selected: the previous version, or `preselect`)."""

    app: ZddApp

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, action: str, preselect: str | None = None, why: str = ""):
        super().__init__(id="picker")
        self.action = action
        self.preselect = preselect
        self.why = why
        self.versions: Versions | None = None
        self.rows: list[str] = []  # selectable tags, in order (ran, then never ran)
        self._prompts: dict[str, Text] = {}
        self._marked: str | None = None

    def compose(self) -> ComposeResult:
        title = "Roll back to which version?" if self.action == "rollback" else "Deploy which version?"
        with Vertical(id="picker-box"):
            yield Label(title, id="picker-title")
            yield Static(Text("reading the hosts' journals…"), id="picker-note")
            yield OptionList(id="picker-list")
            yield Static(Text("↑/↓ choose · Enter plan and confirm · Esc cancel"), id="picker-keys")

    def on_mount(self) -> None:
        self.load()

    @work(exclusive=True, group="picker", exit_on_error=False)
    async def load(self) -> None:
        source = self.app.source
        note = self.query_one("#picker-note", Static)
        if source is None:
            note.update(Text("✖ not connected"))
            return
        try:
            history = await source.history()
        except Exception as exc:  # noqa: BLE001 - shown; the registry's tags are still offered
            note.update(Text(visible(f"✖ could not read the journals: {exc}")))
            history = Versions(ran=[])
        fleet = self.app.fleet
        self.versions = with_registry(history.ran, fleet.tags or [], fleet.tag_labels)
        self.show(source.wall_now().timestamp())

    def show(self, now: float) -> None:
        assert self.versions is not None
        v = self.versions
        options: list[Option | None] = []
        self.rows, self._prompts = [], {}
        for r in v.ran:
            text = Text(describe(r, now))
            if r.tag in v.missing:
                text.append("  deleted from the registry")
            if r.tag in v.labels:
                text.append(f"  · {v.labels[r.tag]}")
            self._add(r.tag, text, options)
        if v.never_ran:
            if options:
                options.append(None)
            options.append(Option(Text("never ran on this fleet (registry tags):", style="bold"), id=NEVER_RAN,
                                  disabled=True))
            for tag in v.never_ran:
                text = Text(f"{tag:<13} never ran here")
                if tag in v.labels:
                    text.append(f"  · {v.labels[tag]}")
                self._add(tag, text, options)
        box = self.query_one("#picker-list", OptionList)
        box.set_options(options)
        prev = v.previous
        want = self.preselect or (prev.tag if prev else None)
        if want not in self.rows:
            want = next((t for t in self.rows if not (v.get(t) and v.get(t).current)), None)  # type: ignore[union-attr]
        if want is not None:
            box.highlighted = box.get_option_index(want)
        self._mark()
        box.focus()
        self.query_one("#picker-note", Static).update(self._note(prev.tag if prev else None))

    def _note(self, prev: str | None) -> Text:
        t = Text()
        if self.action == "rollback":
            if prev:
                t.append(f"{prev} ran before the current version: Enter rolls back to it.")
            else:
                t.append("No earlier version has run on this fleet (the journals hold none).")
        elif self.why:
            t.append(f"d deploys {DEPLOY_RULE}: {self.why}. Enter plans the selected one.")
        else:
            t.append("Enter plans a deploy of the selected version.")
        t.append("\n* runs now; tags below the line never ran here.")
        return t

    def _add(self, tag: str, text: Text, options: list[Option | None]) -> None:
        v = self.versions
        current = v is not None and v.get(tag) is not None and v.get(tag).current  # type: ignore[union-attr]
        prompt = Text("* " if current else "  ") + text
        self.rows.append(tag)
        self._prompts[tag] = prompt
        options.append(Option(Text("  ") + prompt, id=tag))

    def _mark(self) -> None:
        """Draw the cursor glyph on the highlighted row (and take it off the last one)."""
        box = self.query_one("#picker-list", OptionList)
        opt = box.highlighted_option
        tag = opt.id if opt is not None else None
        if tag == self._marked:
            return
        if self._marked in self._prompts:
            box.replace_option_prompt(self._marked, Text("  ") + self._prompts[self._marked])
        if tag in self._prompts:
            box.replace_option_prompt(tag, Text(CURSOR, style="bold") + self._prompts[tag])
        self._marked = tag

    @on(OptionList.OptionHighlighted)
    def _moved(self) -> None:
        self._mark()

    @on(OptionList.OptionSelected)
    def _chosen(self, event: OptionList.OptionSelected) -> None:
        if event.option.id in self._prompts:
            self.dismiss(event.option.id)

    @property
    def selected(self) -> str | None:
        opt = self.query_one("#picker-list", OptionList).highlighted_option
        return opt.id if opt is not None and opt.id in self._prompts else None

    def action_cancel(self) -> None:
        self.dismiss(None)
