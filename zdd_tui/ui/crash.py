"""An error nobody caught in the console: its traceback goes to a file only the user can read,
and the terminal gets one short line naming that file.

Textual's own handler prints a traceback with every frame's local variables, and a frame may
hold a token, a private key or registry credentials. The file holds the traceback without
locals; its directory is 0700 and the file 0600.
"""

from __future__ import annotations

import os
import time
import traceback
from pathlib import Path

from rich.text import Text


def crash_dir() -> Path:
    """`$XDG_STATE_HOME/zdd-tui/crashes` (~/.local/state/zdd-tui/crashes)."""
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "zdd-tui" / "crashes"


def write_report(error: BaseException) -> Path | None:
    """The traceback (no locals) in a new private file; None when it cannot be written."""
    inner = getattr(error, "error", None)  # Textual's WorkerFailed wraps the worker's own error
    shown = inner if isinstance(inner, BaseException) else error
    text = "".join(traceback.format_exception(shown))
    directory = crash_dir()
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
        path = directory / f"console-{stamp}-{os.getpid()}.log"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8", errors="backslashreplace") as f:
            f.write(text)
        return path
    except OSError:
        return None


class Crashed(Exception):
    """What the console reports instead of the error: Textual prints an exception's `__rich__`
    as it is, rather than a traceback with locals."""

    def __init__(self, error: BaseException, report: Path | None):
        super().__init__(type(error).__name__)
        self.error = error
        self.report = report

    def __rich__(self) -> Text:
        return Text(f"zdd-tui stopped on an unexpected error ({type(self.error).__name__}).")

    def details(self) -> str:
        """Where the traceback is; printed as plain text after the app is gone (Textual crops what
        it prints to the terminal's width, and the path is to be copied whole)."""
        if self.report is None:
            return "zdd-tui: the error's details could not be saved."
        return f"zdd-tui: details (the traceback, without variables) in {self.report}"
