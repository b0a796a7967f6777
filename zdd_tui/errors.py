"""The error type every layer raises for problems the operator can act on.

Each error carries what went wrong, what to do about it, and the process exit code the
headless commands use. Messages never contain secrets (callers pass redacted text), and their
control characters are shown rather than obeyed (zdd_tui.text): a message often quotes a host,
an API or a file, and it ends up on a terminal.
"""

from __future__ import annotations

from zdd_tui.text import visible

# Exit codes shared by every headless command.
EXIT_OK = 0
EXIT_ERROR = 1  # something failed and was not restored, or an unexpected error
EXIT_USAGE = 2  # bad command line, bad config, bad input: nothing was changed
EXIT_HALTED = 3  # a rollout halted on a failure and the failed host was restored
EXIT_REFUSED = 4  # refused before changing anything (deploy lock held, unknown tag, ...)
EXIT_INTERRUPTED = 130  # the operator stopped it (like Ctrl-C); the step in progress was settled


class ZddError(Exception):
    """An error with a message for the operator and a hint saying what to do."""

    exit_code = EXIT_ERROR

    def __init__(self, message: str, hint: str | None = None, *, exit_code: int | None = None):
        message = visible(str(message), newlines=True)
        hint = None if hint is None else visible(str(hint), newlines=True)
        super().__init__(message)
        self.message = message
        self.hint = hint
        if exit_code is not None:
            self.exit_code = exit_code

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  hint: {self.hint}"


class UsageError(ZddError):
    exit_code = EXIT_USAGE


class RefusedError(ZddError):
    exit_code = EXIT_REFUSED
