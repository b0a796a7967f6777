"""`zdd-tui deploy` (placeholder until its issue lands; the owner replaces this module)."""

from zdd_tui.errors import UsageError


def register(sub, common):
    p = sub.add_parser("deploy", parents=[common], help="deploy (not built yet)")
    p.set_defaults(func=run)


def run(args):
    raise UsageError("'zdd-tui deploy' is not built yet")
