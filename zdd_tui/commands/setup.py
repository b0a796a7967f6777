"""`zdd-tui setup [--yes] [--accept-new-host-keys] [--json] [--only STEP]`: first-time setup
from zdd.yaml, headless. Each step prints what it will create and its monthly cost first and
asks (or proceeds with --yes); every step finds what already exists, so running it again
creates nothing and an interrupted run resumes."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from zdd_tui.errors import RefusedError, UsageError
from zdd_tui.headless import HeadlessRenderer
from zdd_tui.project.setup import open_setup, step_ids
from zdd_tui.setup.events import Preview


def register(sub, common):
    p = sub.add_parser("setup", parents=[common],
                       help="create the droplets, load balancer and registry; bootstrap the hosts")
    p.add_argument("--yes", action="store_true", help="do not ask before each step (CI)")
    p.add_argument(
        "--accept-new-host-keys",
        action="store_true",
        help="pin the SSH host key of hosts seen for the first time (check the fingerprints printed)",
    )
    p.add_argument("--json", action="store_true", help="print events as JSON lines")
    p.add_argument("--only", choices=step_ids(), metavar="STEP", help=f"run one step: {', '.join(step_ids())}")
    p.add_argument("--import-key", metavar="PATH", help="import this private key instead of generating one")
    p.add_argument("--no-install-docker", action="store_true", help="do not install Docker on hosts that lack it")
    p.set_defaults(func=run)


def load_project_config(path: str):
    from zdd_tui.config import load_config

    return load_config(Path(path))


def _confirm_factory(args):
    if args.yes:
        return lambda p: True
    if args.json or not sys.stdin.isatty():
        def refuse(p: Preview) -> bool:
            raise RefusedError(
                f"setup step '{p.step}' would create resources (+${p.monthly_usd:.2f}/month) and needs confirmation",
                "review the preview, then run again with --yes",
            )

        return refuse

    def ask(p: Preview) -> bool:
        answer = input(f"  proceed with '{p.step}'? [y/N] ").strip().lower()
        return answer in ("y", "yes")

    return ask


def _read_import_key(path: str | None) -> str | None:
    if not path:
        return None
    try:
        return Path(path).read_text()
    except OSError as exc:
        raise UsageError(f"cannot read --import-key {path}: {exc.strerror}") from None


async def run(args) -> int:
    config = load_project_config(args.config)
    import_key = _read_import_key(args.import_key)
    emit = HeadlessRenderer(sys.stdout, json_lines=args.json)
    async with open_setup(
        config,
        context=args.context,
        emit=emit,
        accept_new_host_keys=bool(args.accept_new_host_keys),
        import_key=import_key,
        install_docker=not args.no_install_docker,
    ) as setup:
        done = await setup.run(only=args.only, confirm=_confirm_factory(args))
    if args.json:
        print(json.dumps({"kind": "result", "steps": {d.step: d.status for d in done}}))
    else:
        print("\nsetup complete: " + ", ".join(f"{d.step} {d.status}" for d in done))
    return 0
