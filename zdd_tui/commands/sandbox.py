"""`zdd-tui sandbox` (placeholder until its issue lands; the owner replaces this module)."""

from zdd_tui.errors import UsageError


def register(sub, common):
    p = sub.add_parser("sandbox", parents=[common], help="sandbox (not built yet)")
    p.set_defaults(func=run)


def run(args):
    raise UsageError("'zdd-tui sandbox' is not built yet")
