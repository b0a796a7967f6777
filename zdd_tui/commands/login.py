"""`zdd-tui login`: check a DigitalOcean token against the API, then store it in the OS keyring.

    zdd-tui login [--context C] [--token-stdin] [--api-url URL]   the DO token (prompted, masked)
    zdd-tui login [--context C] --ssh-key FILE                    the SSH private key for the hosts

The token is checked (GET /v2/account) before anything is stored: a rejected token stores
nothing and the error says why (DigitalOcean's message and request id, never the token).
It is checked against --api-url, else ZDD_API_URL from the environment, else DigitalOcean's API,
never against the URL zdd.yaml names (a project file must not see a freshly typed token), and is
stored bound to that URL: zdd-tui then sends it nowhere else.
"""

from __future__ import annotations

import getpass
import json
import os
import sys
from pathlib import Path

from zdd_tui.config import DEFAULT_CONFIG_PATH, Config, api_url_problem, load_config
from zdd_tui.errors import UsageError
from zdd_tui.project import credentials as secrets
from zdd_tui.project.credentials import check_token


def register(sub, common):
    p = sub.add_parser(
        "login",
        parents=[common],
        help="check a DigitalOcean token and store it in the OS keyring",
        description="Check a DigitalOcean token against the API, then store it in the OS keyring "
        "(service zdd-tui, per context). With --ssh-key, store the SSH private key instead.",
    )
    p.add_argument("--token-stdin", action="store_true", help="read the token from standard input (no prompt)")
    p.add_argument("--api-url", default=None,
                   help="API to check the token against and bind it to (default: $ZDD_API_URL, else DigitalOcean's)")
    p.add_argument("--ssh-key", metavar="FILE", default=None, help="store this SSH private key (not the token)")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    p.set_defaults(func=run)


def optional_config(args) -> Config:
    """The project's config if there is one; defaults when the default ./zdd.yaml is absent.

    login/logout work before `zdd-tui init`; a --config that names a missing file is an error.
    """
    path = Path(getattr(args, "config", DEFAULT_CONFIG_PATH))
    if path.exists() or path != DEFAULT_CONFIG_PATH:
        return load_config(path)
    return Config()


def _read_token(args) -> str:
    if args.token_stdin:
        token = sys.stdin.read()
    else:
        if not sys.stdin.isatty():
            raise UsageError(
                "no terminal to ask for the token (standard input is not a terminal)",
                "pass --token-stdin and pipe the token in, e.g. `zdd-tui login --token-stdin < token-file`",
            )
        token = getpass.getpass("DigitalOcean token (input hidden): ")
    token = token.strip()
    if not token:
        raise UsageError("no token given; nothing was stored",
                         "paste a token from https://cloud.digitalocean.com/account/api/tokens")
    if any(c.isspace() for c in token):
        raise UsageError("the token contains whitespace (a token is one word); nothing was stored",
                         "paste the token alone")
    return token


def _store_ssh_key(args, context: str) -> int:
    import asyncssh

    path = Path(args.ssh_key).expanduser()
    try:
        text = path.read_text()
    except OSError as exc:
        raise UsageError(f"cannot read the SSH key file {path}: {exc.strerror}") from None
    try:
        key = asyncssh.import_private_key(text)
    except (asyncssh.KeyImportError, ValueError) as exc:
        reason = ("it is passphrase-protected" if "passphrase" in str(exc).lower()
                  else "it is not a private key asyncssh can read")
        raise UsageError(
            f"{path} cannot be used as the hosts' SSH key: {reason}; nothing was stored",
            "give an unencrypted OpenSSH or PEM private key (the keyring protects it), e.g. from "
            "`ssh-keygen -t ed25519 -N '' -f FILE`",
        ) from None
    secrets.set_ssh_key(context, text)
    result = {"context": context, "stored": "ssh-key", "algorithm": key.get_algorithm()}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"stored the SSH private key ({result['algorithm']}) for context '{context}' in the OS keyring "
              f"({secrets.check_backend()})")
    return 0


async def run(args) -> int:
    config = optional_config(args)
    context = args.context or config.context
    secrets.check_backend()  # before asking for anything: no keyring, no point typing a token
    if args.ssh_key:
        return _store_ssh_key(args, context)
    if config.is_sandbox and not args.api_url:
        state_dir = config.sandbox.state_dir if config.sandbox else "its state directory"  # validation requires it
        raise UsageError(
            f"{config.path}: a sandbox config needs no login (its token is in {state_dir}/token)",
            "log in against DigitalOcean with a non-sandbox zdd.yaml, or pass --api-url",
        )
    if args.api_url:
        api_url = args.api_url.rstrip("/")
        problem = api_url_problem(api_url)
        if problem:
            raise UsageError(f"--api-url {api_url!r}: expected {problem}")
    else:
        api_url = secrets.operator_api_url()
    token = _read_token(args)
    account = await check_token(api_url, token)
    secrets.set_token(context, token, api_url=api_url)
    result = {"context": context, "api_url": api_url, "email": account.email, "status": account.status}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"logged in: context '{context}' is {account.email} (account {account.status}) at {api_url}; "
              "the token is in the OS keyring")
    named = config.digitalocean.api_url
    if config.path is not None and not config.is_sandbox and not secrets.same_api_url(named, api_url):
        print(f"note: {config.path} says digitalocean.api_url: {named!r}; this token is "
              f"bound to {api_url} and is not sent there", file=sys.stderr)
    if os.environ.get(secrets.TOKEN_ENV):
        print(f"note: {secrets.TOKEN_ENV} is set in this environment and overrides the keyring's token",
              file=sys.stderr)
    return 0
