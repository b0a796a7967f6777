"""Entry point `zdd-tui`: the console by default; headless subcommands for CI.

Each subcommand lives in `zdd_tui/commands/<name>.py` with `register(subparsers, common)` that
adds its parser and sets `func` to an `async def run(args) -> int` or `def run(args) -> int`.
"""

from __future__ import annotations

import argparse
import asyncio
import difflib
import importlib
import inspect
import sys

from zdd_tui import __version__
from zdd_tui.errors import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_USAGE, ZddError

COMMANDS = ("init", "login", "logout", "sandbox", "status", "build", "deploy", "rollback", "setup")


class _Parser(argparse.ArgumentParser):
    """argparse with a precise message for unknown subcommands (and the closest one)."""

    def error(self, message: str):  # type: ignore[override]
        if "invalid choice" in message:
            bad = message.split("'")[1] if "'" in message else ""
            close = difflib.get_close_matches(bad, COMMANDS, n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            message = f"unknown command '{bad}'.{hint} Commands: {', '.join(COMMANDS)}"
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"zdd-tui: error: {message}\n")


def common_options() -> argparse.ArgumentParser:
    """Options every subcommand takes."""
    p = argparse.ArgumentParser(add_help=False)
    # SUPPRESS: a subcommand's default must not overwrite `zdd-tui --config X <command>`'s value
    # (argparse applies subparser defaults after the main parser's); main's default is zdd.yaml.
    p.add_argument("--config", default=argparse.SUPPRESS, metavar="PATH", help="project file (default: ./zdd.yaml)")
    p.add_argument("--context", default=None, help="credentials context (default: the config's, else 'default')")
    return p


def json_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="zdd-tui", description="Zero-downtime rolling deploys to DigitalOcean, from the terminal.")
    parser.add_argument("--version", action="version", version=f"zdd-tui {__version__}")
    parser.add_argument("--sandbox", action="store_true", help="start the console on a fresh local sandbox")
    parser.add_argument("--theme", default=None, help="colour theme for the console")
    parser.add_argument("--config", default="zdd.yaml", metavar="PATH", help="project file (default: ./zdd.yaml)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    common = common_options()
    for name in COMMANDS:
        module = importlib.import_module(f"zdd_tui.commands.{name}")
        module.register(sub, common)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command is None:
            from zdd_tui.commands.console import run_console

            return run_console(args)
        result = args.func(args)
        if inspect.isawaitable(result):
            result = asyncio.run(result)
        return int(result or 0)
    except ZddError as exc:
        print(f"zdd-tui: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("zdd-tui: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # last resort: never a traceback with possible secrets in locals
        print(f"zdd-tui: unexpected error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    raise SystemExit(main())
