"""`zdd-tui login` (placeholder until its issue lands; the owner replaces this module)."""

from zdd_tui.errors import UsageError


def register(sub, common):
    p = sub.add_parser("login", parents=[common], help="login (not built yet)")
    p.set_defaults(func=run)


def run(args):
    raise UsageError("'zdd-tui login' is not built yet")
