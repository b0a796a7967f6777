"""`zdd-tui status [--json]`: droplets, the LB and each droplet's health as it sees it, registry
tags, and per host the tag it runs and its own health; on a local-swap host also its proxy's
health, the slot and tag the proxy sends traffic to, and the versions kept for rollback. Read-only."""

from __future__ import annotations

import json
from pathlib import Path

from zdd_tui.errors import ZddError


def register(sub, common):
    p = sub.add_parser("status", parents=[common], help="show droplets, load balancer, tags and hosts")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.add_argument("--no-hosts", action="store_true", help="do not ask the hosts (cloud view only)")
    p.set_defaults(func=run)


async def run(args) -> int:
    from zdd_tui.config import load_config
    from zdd_tui.project import Project
    from zdd_tui.project.status import render_text

    config = load_config(Path(args.config))
    async with await Project.open(config, context=args.context) as project:
        st = await project.status(hosts=not args.no_hosts)
    if not st.droplets and not st.load_balancer and st.errors:
        raise ZddError(
            f"cannot read the fleet: {st.errors[0]}",
            "is the API reachable (for a sandbox: is `zdd-tui sandbox up` running)?",
        )
    if args.json:
        print(json.dumps(st.to_dict(), indent=None))
    else:
        print(render_text(st))
    return 1 if st.errors else 0
