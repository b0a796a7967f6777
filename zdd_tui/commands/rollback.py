"""`zdd-tui rollback [TAG] [--strategy lb-drain|local-swap] [--canary] [--yes] [--json] [--break-lock]`: a
rolling deploy of an earlier tag (local-swap: a retained container needs no pull);
with no TAG, of the version that ran before the current one (the hosts' journals say which).
`zdd-tui rollback --list [--json]`: the versions that ran on this fleet, newest first."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from zdd_tui.commands._rollout import add_rollout_options, execute


def register(sub, common):
    p = sub.add_parser("rollback", parents=[common], help="rolling deploy of an earlier tag (default: the previous)",
                       description="Roll back to TAG (an earlier tag that exists in the registry), host by host, "
                                   "exactly like a deploy. Without TAG: the version that ran before the current "
                                   "one, per the hosts' journals. --list shows the versions that ran.")
    p.add_argument("tag", metavar="TAG", nargs="?", default=None,
                   help="the tag to go back to, e.g. sha-abc1234 (default: the previous version)")
    p.add_argument("--list", action="store_true",
                   help="print the versions that ran on this fleet, newest first, and change nothing")
    p.add_argument("--canary", action="store_const", const=True, default=None,
                   help="local-swap: judge the version on the first batch before the rest follow (a rollback "
                        "skips the canary otherwise: the version already ran)")
    add_rollout_options(p)
    p.set_defaults(func=run)


async def run(args) -> int:
    if args.list:
        return await list_versions(args)
    return await execute(args, action="rollback", tag=args.tag)


async def list_versions(args) -> int:
    from zdd_tui.config import load_config
    from zdd_tui.errors import UsageError
    from zdd_tui.project import Project

    if args.tag is not None:
        raise UsageError("--list takes no TAG", "run 'zdd-tui rollback --list' alone")
    config = load_config(Path(args.config))
    async with await Project.open(config, context=getattr(args, "context", None)) as project:
        versions = await project.versions()
    if args.json:
        print(json.dumps(versions.to_dict()))
    else:
        for line in versions.lines(time.time()):
            print(line)
    sys.stdout.flush()
    return 0
