"""`zdd-tui init` (placeholder until its issue lands; the owner replaces this module)."""

from zdd_tui.errors import UsageError


def register(sub, common):
    p = sub.add_parser("init", parents=[common], help="init (not built yet)")
    p.set_defaults(func=run)


def run(args):
    raise UsageError("'zdd-tui init' is not built yet")
