"""`zdd-tui deploy [--tag TAG] [--yes] [--json] [--break-lock]`: a rolling deploy, headless."""

from __future__ import annotations

from zdd_tui.commands._rollout import add_rollout_options, execute


def register(sub, common):
    p = sub.add_parser("deploy", parents=[common], help="rolling deploy of a tag to every host",
                       description="Rolling deploy through the load balancer: one batch at a time, each "
                                   "host drained, replaced and back in the LB before the next; halts and "
                                   "restores the failed host on the first failure.")
    p.add_argument("--tag", default=None,
                   help="image tag to deploy (default: sha-<short git HEAD of the current directory>)")
    add_rollout_options(p)
    p.set_defaults(func=run)


async def run(args) -> int:
    return await execute(args, action="deploy", tag=args.tag)
