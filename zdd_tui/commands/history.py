"""`zdd-tui history [--json] [-n N]`: the rollouts that ran on the fleet, newest first, from the
hosts' journals: id, action, tag, hosts, when, who, outcome, how long. Read-only."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def register(sub, common):
    p = sub.add_parser("history", parents=[common],
                       help="the rollouts that ran: what, where, when, by whom, how they ended",
                       description="The rollouts that ran on this fleet, newest first, from the hosts' journals "
                                   "(each host's records merged by rollout id).")
    p.add_argument("-n", "--limit", type=int, default=20, metavar="N",
                   help="show at most N rollouts (default 20; 0 for all)")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.set_defaults(func=run)


async def run(args) -> int:
    from zdd_tui.config import load_config
    from zdd_tui.errors import UsageError
    from zdd_tui.project import Project
    from zdd_tui.project.history import history

    if args.limit < 0:
        raise UsageError(f"-n {args.limit}: expected 0 (all) or a positive number")
    config = load_config(Path(args.config))
    async with await Project.open(config, context=args.context) as project:
        rollouts, state = await history(project, args.limit or None)
    if args.json:
        print(json.dumps({
            "rollouts": [r.to_dict() for r in rollouts],
            "unreadable": state.unreadable,
            "skipped": [{"host": s.host, "line": s.line, "why": s.why} for s in state.skipped],
        }))
    else:
        now = time.time()
        if not rollouts:
            print("no rollout has run on this fleet yet (the hosts' journals are empty)")
        for r in rollouts:
            print(r.line(now))
        for host, why in state.unreadable.items():
            print(f"journal on {host} unreadable: {why}", file=sys.stderr)
        for line in state.skipped_lines():
            print(f"journal: skipped {line}", file=sys.stderr)
    return 1 if state.unreadable else 0
