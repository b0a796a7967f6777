"""Entry point `zdd-tui`: the console by default; headless subcommands for CI.

Each subcommand lives in `zdd_tui/commands/<name>.py` with `register(subparsers, common)` that
adds its parser and sets `func` to an `async def run(args) -> int` or `def run(args) -> int`.
A command's module is imported only when that command is parsed (run or `<command> --help`):
`COMMANDS` holds each one's one-line help for `zdd-tui --help`, so the console's start and the
other commands do not pay for every command's imports (tests/test_cli.py checks it matches).
"""

from __future__ import annotations

import argparse
import asyncio
import difflib
import importlib
import inspect
import sys
from typing import NoReturn, cast

from zdd_tui import __version__
from zdd_tui.errors import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_USAGE, ZddError
from zdd_tui.text import visible

# name -> the help line of its parser (the same text as its module's `register` gives it).
COMMAND_HELP = {
    "init": "write a commented zdd.yaml for the current project",
    "login": "check a DigitalOcean token and store it in the OS keyring",
    "logout": "delete the context's DigitalOcean token and SSH key from the OS keyring",
    "secret": "the application's secrets (OS keyring, per context)",
    "sandbox": "a local stand-in for DigitalOcean",
    "status": "show droplets, load balancer, tags and hosts",
    "build": "build (and push) the service image",
    "deploy": "rolling deploy of a tag to every host",
    "rollback": "rolling deploy of an earlier tag (default: the previous)",
    "setup": "create the droplets, load balancer and registry; bootstrap the hosts",
    "logs": "the app container's logs, from one host or all (-f follows)",
    "history": "the rollouts that ran: what, where, when, by whom, how they ended",
    "lock": "the deploy lock: who holds it (status), or break it on purpose (release)",
    "ci": "write a CI workflow that builds and deploys (ci github)",
}
COMMANDS = tuple(COMMAND_HELP)


class _LazySubParsers(argparse._SubParsersAction):
    """Subparsers whose full parsers are registered (their modules imported) on first use.

    Until then each command has a placeholder parser carrying only its help line, which is all
    `zdd-tui --help` shows. `load(name)` swaps in the real one from `zdd_tui.commands.<name>`.
    """

    common: argparse.ArgumentParser
    _loaded: set

    def load(self, name: str) -> None:
        if name in self._loaded or name not in COMMAND_HELP:
            return
        self._loaded.add(name)
        placeholder = self._name_parser_map.pop(name)
        at = next(i for i, a in enumerate(self._choices_actions) if a.dest == name)
        del self._choices_actions[at]
        module = importlib.import_module(f"zdd_tui.commands.{name}")
        module.register(self, self.common)
        if self._name_parser_map.get(name) is None:  # pragma: no cover - a module that registers nothing
            self._name_parser_map[name] = placeholder
        # keep the help listing in COMMANDS order
        moved = next(i for i, a in enumerate(self._choices_actions) if a.dest == name)
        self._choices_actions.insert(at, self._choices_actions.pop(moved))

    def load_all(self) -> None:
        for name in COMMANDS:
            self.load(name)

    def __call__(self, parser, namespace, values, option_string=None):
        if values:
            self.load(values[0])
        super().__call__(parser, namespace, values, option_string)


class _Parser(argparse.ArgumentParser):
    """argparse with a precise message for unknown subcommands (and the closest one)."""

    def error(self, message: str) -> NoReturn:
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


def build_parser(eager: bool = False) -> argparse.ArgumentParser:
    """The parser; `eager` registers every command's full parser now (else on first use)."""
    parser = _Parser(prog="zdd-tui", description="Zero-downtime rolling deploys to DigitalOcean, from the terminal.")
    parser.add_argument("--version", action="version", version=f"zdd-tui {__version__}")
    parser.add_argument("--sandbox", action="store_true", help="start the console on a fresh local sandbox")
    parser.add_argument("--theme", default=None, help="colour theme for the console")
    parser.add_argument("--config", default="zdd.yaml", metavar="PATH", help="project file (default: ./zdd.yaml)")
    parser.register("action", "lazy_parsers", _LazySubParsers)
    # The action registered above: argparse's stubs can only say the default class.
    sub = cast(
        _LazySubParsers,
        parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser, action="lazy_parsers"),
    )
    sub.common = common_options()
    sub._loaded = set()
    for name, text in COMMAND_HELP.items():
        sub.add_parser(name, help=text)
    if eager:
        sub.load_all()
    return parser


def _no_core_dumps() -> None:
    """No core file for this process or any it starts (limits are inherited): a dump would hold
    the token and the SSH key in plain text."""
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_CORE, (0, resource.getrlimit(resource.RLIMIT_CORE)[1]))
    except (ImportError, ValueError, OSError):  # no such limit on this platform
        pass


def main(argv: list[str] | None = None) -> int:
    _no_core_dumps()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command is None:
            from zdd_tui.commands.console import run_console

            return run_console(args)
        result = args.func(args)
        if inspect.iscoroutine(result):  # an `async def run`
            result = asyncio.run(result)
        return int(result or 0)
    except ZddError as exc:
        _say(f"zdd-tui: error: {visible(str(exc), newlines=True)}")
        return exc.exit_code
    except KeyboardInterrupt:
        print("zdd-tui: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - last resort: never a traceback with possible secrets in locals
        _say(f"zdd-tui: unexpected error: {type(exc).__name__}: {visible(str(exc), newlines=True)}")
        return EXIT_ERROR


def _say(text: str) -> None:
    """An error on stderr. Its lines may quote a host or a hook: in GitHub Actions, none of them
    may be taken for a workflow command."""
    import os

    if os.environ.get("GITHUB_ACTIONS") == "true":
        from zdd_tui.actions import escape_lines

        text = escape_lines(text)
    print(text, file=sys.stderr)


if __name__ == "__main__":
    raise SystemExit(main())
