"""Messages between the data layer and the screens (harlequin-style: post, then @on handlers)."""

from __future__ import annotations

from typing import Any

from textual.message import Message

from zdd_tui.rollout.events import Event


class FleetData(Message):
    """One poll result: the app folds it into its FleetState, the dashboard repaints that pane."""

    def __init__(self, task: str, result: Any, error: BaseException | None):
        super().__init__()
        self.task, self.result, self.error = task, result, error


class RolloutEvent(Message):
    """An engine event for the rollout view."""

    def __init__(self, event: Event):
        super().__init__()
        self.event = event


class SourceReady(Message):
    """The data source is open (the sandbox is up, the session connected)."""


class SourceFailed(Message):
    def __init__(self, text: str):
        super().__init__()
        self.text = text


class RolloutReturned(Message):
    """The engine call returned (after RolloutFinished: the lock is released by then)."""
