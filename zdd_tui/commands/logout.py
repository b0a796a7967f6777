"""`zdd-tui logout` (placeholder until its issue lands; the owner replaces this module)."""

from zdd_tui.errors import UsageError


def register(sub, common):
    p = sub.add_parser("logout", parents=[common], help="logout (not built yet)")
    p.set_defaults(func=run)


def run(args):
    raise UsageError("'zdd-tui logout' is not built yet")
