"""The sandbox's container logs: each line of a child's output stamped as the sandbox reads it
(zdd_tui.sandbox.procs.pump_log), and read back by count and by instant (read_log)."""

from __future__ import annotations

import asyncio
import time

from zdd_tui.sandbox.procs import MAX_LOG_LINE, log_append, log_stamp, pump_log, read_log


async def test_lines_are_stamped_as_they_come_and_read_since_an_instant(tmp_path):
    path = tmp_path / "c.log"
    stream = asyncio.StreamReader()
    pump = asyncio.create_task(pump_log(stream, path))
    t0 = time.time()
    stream.feed_data(b"first\r\nsec")
    await asyncio.sleep(0.05)
    cut = time.time()
    await asyncio.sleep(0.05)
    stream.feed_data(b"ond\n" + b"x" * (MAX_LOG_LINE + 10))  # a line that never ends: its start kept
    await asyncio.sleep(0.05)
    stream.feed_data(b"y" * 100)  # more of it, in a read of its own: dropped too
    await asyncio.sleep(0.05)
    stream.feed_data(b"\nlast, without a newline")
    stream.feed_eof()
    await pump
    log_append(path, "[sandbox] app stopped")
    raw = path.read_text().splitlines()
    assert len(raw) == 5 and all(line[26:28] == "Z " for line in raw)
    assert raw[0][:27] >= log_stamp(t0) and raw[0][:27] <= log_stamp(cut)
    assert read_log(path, 0) == ["first", "second", "x" * MAX_LOG_LINE, "last, without a newline",
                                 "[sandbox] app stopped"]
    assert read_log(path, 2) == ["last, without a newline", "[sandbox] app stopped"]
    # "sec" came before the cut but its line ended after it: a line is as old as its end.
    assert read_log(path, 0, since=cut) == ["second", "x" * MAX_LOG_LINE, "last, without a newline",
                                            "[sandbox] app stopped"]
    assert read_log(path, 0, since=time.time() + 1) == []
    assert read_log(tmp_path / "none.log", 10) == []


def test_lines_of_an_older_unstamped_log_are_shown_whole_and_older_than_any_instant(tmp_path):
    path = tmp_path / "c.log"
    path.write_text("zdd-service listening port=8080\n")
    log_append(path, "[sandbox] app started", at=1_800_000_000.25)
    assert log_stamp(1_800_000_000.25) == "2027-01-15T08:00:00.250000Z"
    assert read_log(path, 0) == ["zdd-service listening port=8080", "[sandbox] app started"]
    assert read_log(path, 0, since=1_800_000_000.0) == ["[sandbox] app started"]
