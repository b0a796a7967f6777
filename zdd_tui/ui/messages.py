"""Messages between the data layer and the screens (harlequin-style: post, then @on handlers)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from textual.message import Message
from textual.message_pump import MessagePump

from zdd_tui.events import Event
from zdd_tui.rollout.events import Outcome


class FleetData(Message):
    """One poll result: the app folds it into its FleetState, the dashboard repaints that pane."""

    def __init__(self, task: str, result: Any, error: BaseException | None):
        super().__init__()
        self.task, self.result, self.error = task, result, error


class Emitted(Message, bubble=False):
    """Events of an operation (rollout, setup, build) for the screen that started it, in the
    order they were emitted. Screens dispatch on each event's type."""

    def __init__(self, events: tuple[Event, ...]):
        super().__init__()
        self.events = events


class Relay:
    """The listener a screen hands to an operation: it posts the events to the screen as Emitted
    messages, on the event loop (the operation runs there too). An engine can emit thousands of
    events a second (200 hosts) and a message each would starve the keys, so the events of one
    turn of the loop travel in one message."""

    def __init__(self, screen: MessagePump):
        self._screen = screen
        self._batch: list[Event] = []

    def __call__(self, event: Event) -> None:
        if not self._batch:
            asyncio.get_running_loop().call_soon(self.send)
        self._batch.append(event)

    def send(self) -> None:
        """Post the events that have arrived. Call it before posting a message that must come
        after them (the operation returned)."""
        if self._batch:
            batch, self._batch = tuple(self._batch), []
            self._screen.post_message(Emitted(batch))

    def after(self, callback: Callable[..., Any], *args: Any) -> None:
        """Call back on the screen once the events so far are handled (e.g. to paint how the
        operation ended below its last events): both go through the screen's queue, in order."""
        self.send()
        self._screen.call_later(callback, *args)


class SourceReady(Message):
    """The data source is open (the sandbox is up, the session connected)."""


class SourceFailed(Message):
    def __init__(self, text: str):
        super().__init__()
        self.text = text


class RolloutReturned(Message):
    """The engine call returned (after RolloutFinished: the lock is released by then), with its
    outcome (shown if the engine returned without a finished event, e.g. on an error)."""

    def __init__(self, outcome: Outcome):
        super().__init__()
        self.outcome = outcome
