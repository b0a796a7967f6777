"""`zdd-tui setup` (placeholder until its issue lands; the owner replaces this module)."""

from zdd_tui.errors import UsageError


def register(sub, common):
    p = sub.add_parser("setup", parents=[common], help="setup (not built yet)")
    p.set_defaults(func=run)


def run(args):
    raise UsageError("'zdd-tui setup' is not built yet")
