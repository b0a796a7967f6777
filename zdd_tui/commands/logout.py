"""`zdd-tui logout [--context C] [--yes]`: delete the context's token and SSH key from the keyring."""

from __future__ import annotations

import json
import os
import sys

from zdd_tui.commands.login import optional_config
from zdd_tui.errors import EXIT_ERROR, UsageError
from zdd_tui.project import credentials as secrets


def register(sub, common):
    p = sub.add_parser(
        "logout",
        parents=[common],
        help="delete the context's DigitalOcean token and SSH key from the OS keyring",
    )
    p.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    config = optional_config(args)
    context = args.context or config.context
    secrets.check_backend()
    if not args.yes:
        if not sys.stdin.isatty():
            raise UsageError("no terminal to confirm the logout; nothing was deleted", "pass --yes")
        answer = input(f"Delete the DigitalOcean token and SSH key of context '{context}' from the keyring? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("cancelled; nothing was deleted", file=sys.stderr)
            return EXIT_ERROR
    stored = (("do-token", secrets.delete_token), ("ssh-key", secrets.delete_ssh_key))
    removed = [name for name, fn in stored if fn(context)]
    if args.json:
        print(json.dumps({"context": context, "removed": removed}))
    elif removed:
        print(f"removed {' and '.join(removed)} of context '{context}' from the OS keyring")
    else:
        print(f"nothing was stored for context '{context}'")
    for var in (secrets.TOKEN_ENV, secrets.SSH_KEY_ENV):
        if os.environ.get(var):
            print(f"note: {var} is still set in this environment and is still used", file=sys.stderr)
    return 0
