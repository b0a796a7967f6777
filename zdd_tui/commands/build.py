"""`zdd-tui build` (placeholder until its issue lands; the owner replaces this module)."""

from zdd_tui.errors import UsageError


def register(sub, common):
    p = sub.add_parser("build", parents=[common], help="build (not built yet)")
    p.set_defaults(func=run)


def run(args):
    raise UsageError("'zdd-tui build' is not built yet")
