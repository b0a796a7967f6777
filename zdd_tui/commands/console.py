"""`zdd-tui` with no subcommand: the console (placeholder until the console issue lands)."""

from zdd_tui.errors import UsageError


def run_console(args) -> int:
    raise UsageError("the console is not built yet")
