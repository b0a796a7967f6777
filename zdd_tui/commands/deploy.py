"""`zdd-tui deploy [--tag TAG] [--strategy lb-drain|local-swap] [--canary|--no-canary] [--yes] [--json]
[--break-lock]`: a rolling deploy, headless."""

from __future__ import annotations

import argparse

from zdd_tui.commands._rollout import add_rollout_options, execute


def register(sub, common):
    p = sub.add_parser("deploy", parents=[common], help="rolling deploy of a tag to every host",
                       description="Rolling deploy, one batch at a time; halts on the first failure and "
                                   "leaves the failed host on the version it ran. local-swap: the proxy on "
                                   "each host switches from the old container to the new one (the host "
                                   "never leaves the LB). lb-drain: each host drained, replaced and back in "
                                   "the LB before the next.")
    p.add_argument("--tag", default=None,
                   help="image tag to deploy (default: sha-<short git HEAD of the current directory>)")
    p.add_argument("--canary", action=argparse.BooleanOptionalAction, default=None,
                   help="local-swap: the first batch soaks under real traffic and is judged against the hosts "
                        "still on the old version before the rest follow (default: deploy.canary.enabled; "
                        "unset: on for fleets of 3 or more)")
    add_rollout_options(p)
    p.set_defaults(func=run)


async def run(args) -> int:
    return await execute(args, action="deploy", tag=args.tag)
