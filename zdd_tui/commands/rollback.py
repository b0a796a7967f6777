"""`zdd-tui rollback TAG [--yes] [--json] [--break-lock]`: a rolling deploy of an earlier tag."""

from __future__ import annotations

from zdd_tui.commands._rollout import add_rollout_options, execute


def register(sub, common):
    p = sub.add_parser("rollback", parents=[common], help="rolling deploy of an earlier tag",
                       description="Roll back to TAG (an earlier sha- tag that exists in the registry), "
                                   "host by host, exactly like a deploy.")
    p.add_argument("tag", metavar="TAG", help="the tag to go back to, e.g. sha-abc1234")
    add_rollout_options(p)
    p.set_defaults(func=run)


async def run(args) -> int:
    return await execute(args, action="rollback", tag=args.tag)
