"""How a screen receives an operation's events: the Relay posts them as Emitted messages, the
events of one turn of the event loop in one message, and `after` runs behind them."""

from __future__ import annotations

import asyncio

from textual.app import App
from textual.screen import Screen

from zdd_tui.events import LogLine
from zdd_tui.ui.messages import Emitted, Relay


class Listening(Screen):
    def __init__(self) -> None:
        super().__init__()
        self.seen: list = []
        self.relay = Relay(self)

    def on_emitted(self, message: Emitted) -> None:
        self.seen.append([e.line for e in message.events])


async def test_events_of_one_turn_share_a_message_and_after_comes_behind_them():
    screen = Listening()

    class One(App):
        def on_mount(self) -> None:
            self.push_screen(screen)

    async with One().run_test() as pilot:
        await pilot.pause()
        for line in ("a", "b", "c"):
            screen.relay(LogLine(None, line))
        await asyncio.sleep(0)  # the next turn: they travel together
        screen.relay(LogLine(None, "d"))
        screen.relay.after(lambda: screen.seen.append("ended"))  # without waiting for a turn
        await pilot.pause()
        assert screen.seen == [["a", "b", "c"], ["d"], "ended"]
