"""Fan-out of engine events to any number of listeners (console, headless renderer, tests).

A listener is a callable taking an Event; it may be sync or return an awaitable. One listener
failing never stops the rollout or the other listeners: the engine must keep its hosts safe even
when a screen breaks.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Iterable

from zdd_tui.events import Event, Listener

log = logging.getLogger(__name__)


class Fanout:
    def __init__(self, listeners: Iterable[Listener] = ()):
        self._listeners: list[Listener] = list(listeners)
        self.errors: list[tuple[Listener, BaseException]] = []

    def add(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def remove(self, listener: Listener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    async def emit(self, event: Event) -> None:
        for listener in list(self._listeners):
            try:
                result = listener(event)
                if inspect.isawaitable(result):
                    await result
            except Exception as exc:  # noqa: BLE001 - see module docstring
                self.errors.append((listener, exc))
                log.warning("listener %r failed: %s", listener, exc)


class Recorder:
    """A listener that keeps every event (tests, the console's replay)."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def __call__(self, event: Event) -> None:
        self.events.append(event)

    def of(self, cls: type) -> list:
        return [e for e in self.events if isinstance(e, cls)]

    def of_kind(self, kind: str) -> list:
        return [e for e in self.events if e.kind == kind]
