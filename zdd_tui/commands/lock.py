"""`zdd-tui lock status [--json]`: who holds the deploy lock (holder, since, version, stale or
not), per host. `zdd-tui lock release [--yes]`: remove that lock on purpose, only the lock (the
journal keeps the rollout, which shows as interrupted), after a confirmation."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from zdd_tui.errors import UsageError


def register(sub, common):
    p = sub.add_parser("lock",
                       help="the deploy lock: who holds it (status), or break it on purpose (release)",
                       description="Show the hosts' deploy lock, or release a lock whose rollout is gone.")
    verbs = p.add_subparsers(dest="verb", metavar="VERB", required=True)
    s = verbs.add_parser("status", parents=[common], help="who holds the lock: holder, since, version, stale?")
    s.add_argument("--json", action="store_true", help="print one JSON document")
    s.set_defaults(func=status)
    r = verbs.add_parser("release", parents=[common],
                         help="remove the lock on every host (refused while its holder runs on this machine)")
    r.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    r.set_defaults(func=release)


async def status(args) -> int:
    from zdd_tui.config import load_config
    from zdd_tui.project import Project
    from zdd_tui.project.lock import lock_status

    config = load_config(Path(args.config))
    async with await Project.open(config, context=args.context) as project:
        st = await lock_status(project)
    if args.json:
        print(json.dumps(st.to_dict()))
    else:
        print("\n".join(st.lines()))
    return 0


def _confirm(question: str) -> bool:
    sys.stderr.write(question)
    sys.stderr.flush()
    try:
        answer = sys.stdin.readline()
    except (EOFError, KeyboardInterrupt):
        return False
    return answer.strip().lower() in ("y", "yes")


async def release(args) -> int:
    from zdd_tui.config import load_config
    from zdd_tui.project import Project
    from zdd_tui.project.lock import lock_status, release_lock

    if not args.yes and not sys.stdin.isatty():
        raise UsageError("refusing to release the deploy lock without confirmation: there is no terminal to ask on",
                         "pass --yes to release it without asking")
    config = load_config(Path(args.config))
    async with await Project.open(config, context=args.context) as project:
        seen = await lock_status(project)
        if seen.held and not args.yes:
            print("\n".join(seen.lines()), file=sys.stderr)
            if not _confirm("Release this deploy lock? A rollout still running elsewhere would then run "
                            "unprotected. [y/N] "):
                print("not confirmed: the lock was left as it is", file=sys.stderr)
                return 0
        removed = await release_lock(project, seen)
    if not removed:
        print("the lock was gone already (its rollout ended, or someone released it): nothing was removed")
        return 0
    for rid in dict.fromkeys(i.rollout_id for i in removed.values()):
        hosts = [h for h, i in removed.items() if i.rollout_id == rid]
        info = removed[hosts[0]]
        print(f"released the deploy lock on {', '.join(hosts)}: {info.describe()}")
    print("only the lock file was removed; the journal still has that rollout ('zdd-tui status' shows it "
          "as interrupted if it never finished; 'zdd-tui deploy' resumes or supersedes it)")
    return 0
