"""`zdd-tui rollback` (placeholder until its issue lands; the owner replaces this module)."""

from zdd_tui.errors import UsageError


def register(sub, common):
    p = sub.add_parser("rollback", parents=[common], help="rollback (not built yet)")
    p.set_defaults(func=run)


def run(args):
    raise UsageError("'zdd-tui rollback' is not built yet")
