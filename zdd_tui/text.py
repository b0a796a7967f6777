"""Text from outside (a container's log, a host's output, an API's error, the hosts' journal),
made safe to show on a terminal.

A terminal obeys control characters and escape sequences in what it prints: ESC starts a
sequence that can set the window title, clear the screen or plant a link (OSC 8); C1 controls
(0x80-0x9f) do the same on many terminals; bidi overrides reorder what the reader sees. `visible`
shows each of them as a few printable characters instead (ESC as `^[`, as `cat -v` does), so the
operator reads what was sent and the terminal obeys nothing in it.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

# C0 controls but tab and newline, DEL, C1 controls, and the bidi embeddings/overrides/isolates
# and marks (U+061C, U+200E-200F, U+202A-202E, U+2066-2069). Tab and newline are handled apart.
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_ANY = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
TAB_WIDTH = 8


def _shown(ch: str) -> str:
    code = ord(ch)
    if code < 0x20:
        return "^" + chr(code + 0x40)  # ESC -> ^[, NUL -> ^@, CR -> ^M
    if code == 0x7F:
        return "^?"
    if code <= 0x9F:
        return f"\\x{code:02x}"  # C1: 0x9b (CSI) -> \x9b
    return f"<U+{code:04X}>"  # a bidi control: named, not obeyed


def _replace(m: re.Match[str]) -> str:
    return _shown(m.group())


def visible(text: str, *, newlines: bool = False) -> str:
    """`text` with every control character and escape sequence shown rather than obeyed.

    Tabs become spaces. Newlines are kept only with `newlines=True` (for a caller that shows
    lines: a message block, a log pane); otherwise they are shown as `^J`, so one outside value
    stays one line.
    """
    if not _ANY.search(text):
        return text  # the common case, at the cost of one scan
    if "\t" in text:
        text = text.expandtabs(TAB_WIDTH)
    text = _UNSAFE.sub(_replace, text)
    if not newlines:
        text = text.replace("\n", "^J")
    return text


def _value(v: Any, newlines: bool) -> Any:
    if type(v) is str:  # exactly str: a str-valued enum (a phase, a status) is ours, left alone
        return visible(v, newlines=newlines)
    if type(v) is tuple:
        return tuple(_value(x, newlines) for x in v)
    if type(v) is list:
        return [_value(x, newlines) for x in v]
    if type(v) is dict:
        return {_value(k, newlines): _value(x, newlines) for k, x in v.items()}
    return v  # numbers, enums, None; a nested dataclass shows its own text at its construction


_FIELDS: dict[type, tuple[str, ...]] = {}


def show_fields(obj: Any, *, one_line: frozenset[str] | tuple[str, ...] = (), newlines: bool = True) -> None:
    """Apply `visible` to every text field of a (frozen) dataclass instance, in place: for a
    `__post_init__`, so a value is made safe once, where it is made, for every reader.
    Fields named in `one_line` also show their newlines."""
    names = _FIELDS.get(type(obj))
    if names is None:
        names = _FIELDS[type(obj)] = tuple(f.name for f in dataclasses.fields(obj))
    for name in names:
        v = getattr(obj, name)
        shown = _value(v, newlines and name not in one_line)
        if shown is not v and shown != v:
            object.__setattr__(obj, name, shown)
