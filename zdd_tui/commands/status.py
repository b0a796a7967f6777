"""`zdd-tui status` (placeholder until its issue lands; the owner replaces this module)."""

from zdd_tui.errors import UsageError


def register(sub, common):
    p = sub.add_parser("status", parents=[common], help="status (not built yet)")
    p.set_defaults(func=run)


def run(args):
    raise UsageError("'zdd-tui status' is not built yet")
