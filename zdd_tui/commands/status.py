"""`zdd-tui status [--json]`: droplets, the LB and each droplet's health as it sees it, registry
tags, and per host the tag it runs and its own health. Read-only."""

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
    from zdd_tui import fleetstatus
    from zdd_tui.config import load_config

    config = load_config(Path(args.config))
    session = await fleetstatus.open_session(config, args.context)
    try:
        st = await fleetstatus.gather(session, hosts=not args.no_hosts)
    finally:
        await session.close()
    if not st.droplets and not st.load_balancer and st.errors:
        raise ZddError(
            f"cannot read the fleet: {st.errors[0]}",
            "is the API reachable (for a sandbox: is `zdd-tui sandbox up` running)?",
        )
    if args.json:
        print(json.dumps(st.to_dict(), indent=None))
    else:
        print(fleetstatus.render_text(st))
    return 1 if st.errors else 0
