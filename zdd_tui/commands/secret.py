"""`zdd-tui secret set|list|rm`: the application's secrets, in the OS keyring per context.

    zdd-tui secret set NAME      the value from a hidden prompt (or standard input when piped)
    zdd-tui secret list [--json] names and when each was set, never a value
    zdd-tui secret rm NAME [--yes]

`service.secrets` in zdd.yaml names which ones the container gets. In CI, ZDD_SECRET_<NAME> in
the environment takes precedence over the keyring. A value is never an argument (it would be
in the shell's history and in every process listing).
"""

from __future__ import annotations

import getpass
import json
import sys

from zdd_tui.commands.login import optional_config
from zdd_tui.errors import UsageError
from zdd_tui.project import credentials


def register(sub, common):
    p = sub.add_parser("secret", help="the application's secrets (OS keyring, per context)",
                       description="Application secrets, kept in the OS keyring per context; service.secrets in "
                                   "zdd.yaml names which ones the container gets. In CI, ZDD_SECRET_<NAME> "
                                   "variables take precedence over the keyring.")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    s = actions.add_parser("set", parents=[common], help="store a secret (value from a hidden prompt or stdin)")
    s.add_argument("name", metavar="NAME", help="an environment variable name, e.g. DATABASE_URL")
    s.set_defaults(func=run_set)
    ls = actions.add_parser("list", parents=[common], help="names and when each was set (never values)")
    ls.add_argument("--json", action="store_true", help="print JSON")
    ls.set_defaults(func=run_list)
    rm = actions.add_parser("rm", parents=[common], help="delete a secret from the keyring")
    rm.add_argument("name", metavar="NAME")
    rm.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    rm.set_defaults(func=run_rm)


def _context(args) -> tuple[str, tuple[str, ...]]:
    config = optional_config(args)
    return args.context or config.context, config.service.secrets


def _read_value(name: str) -> str:
    if sys.stdin.isatty():
        value = getpass.getpass(f"value of {name} (input hidden): ")
    else:
        value = sys.stdin.read()
        # One trailing newline is the pipe's (echo, a file), not the value's.
        value = value[:-2] if value.endswith("\r\n") else value[:-1] if value.endswith("\n") else value
    if not value:
        raise UsageError(f"no value given for {name}; nothing was stored",
                         f"type it at the prompt, or pipe it: `zdd-tui secret set {name} < file`")
    return value


def run_set(args) -> int:
    context, wanted = _context(args)
    name = credentials.check_secret_name(args.name)
    credentials.check_backend()  # before asking for anything: no keyring, no point typing a value
    credentials.set_app_secret(context, name, _read_value(name))
    print(f"stored secret {name} for context '{context}' in the OS keyring", file=sys.stderr)
    if name not in wanted:
        print(f"note: service.secrets does not list {name}, so no container gets it yet", file=sys.stderr)
    if credentials.app_secret_env(name) is not None:
        print(f"note: {credentials.SECRET_ENV_PREFIX}{name} is set in this environment and takes precedence",
              file=sys.stderr)
    return 0


def run_list(args) -> int:
    context, wanted = _context(args)
    stored = credentials.list_app_secrets(context)
    rows = [{"name": n, "set_at": stored.get(n), "in_config": n in wanted,
             "from_env": credentials.app_secret_env(n) is not None}
            for n in sorted({*stored, *wanted})]
    missing = [r["name"] for r in rows if r["in_config"] and r["set_at"] is None and not r["from_env"]]
    if args.json:
        print(json.dumps({"context": context, "secrets": rows, "missing": missing}))
        return 0
    if not rows:
        print(f"no secrets for context '{context}'")
    for r in rows:
        where = f"set {r['set_at']}" if r["set_at"] else "NOT SET"
        bits = [where]
        if r["from_env"]:
            bits.append(f"{credentials.SECRET_ENV_PREFIX}{r['name']} overrides it")
        bits.append("in service.secrets" if r["in_config"] else "not in service.secrets")
        print(f"{r['name']:<24} " + "; ".join(bits))
    return 0


def run_rm(args) -> int:
    context, _wanted = _context(args)
    name = credentials.check_secret_name(args.name)
    if not args.yes:
        if not sys.stdin.isatty():
            raise UsageError(f"refusing to delete secret {name} without confirmation: there is no terminal to ask on",
                             "pass --yes")
        sys.stderr.write(f"Delete secret {name} of context '{context}' from the keyring? [y/N] ")
        sys.stderr.flush()
        if sys.stdin.readline().strip().lower() not in ("y", "yes"):
            print("not confirmed: nothing was deleted", file=sys.stderr)
            return 0
    if credentials.delete_app_secret(context, name):
        print(f"deleted secret {name} of context '{context}'", file=sys.stderr)
        return 0
    print(f"no secret {name} in context '{context}': nothing deleted", file=sys.stderr)
    return 0
