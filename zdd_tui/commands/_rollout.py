"""Shared by `deploy` and `rollback`: plan, confirm, run with a live renderer, exit code."""

from __future__ import annotations

import asyncio
import signal
import sys

from zdd_tui.errors import UsageError


def add_rollout_options(p) -> None:
    from zdd_tui.config import key_for

    choices = dict(key_for("deploy.strategy").choices)
    p.add_argument("--strategy", choices=list(choices), default=None,
                   help="override the config's deploy.strategy for this run: "
                        + "; ".join(f"{k}: {v}" for k, v in choices.items()))
    p.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation (CI)")
    p.add_argument("--json", action="store_true", help="print JSON event lines instead of text")
    p.add_argument("--break-lock", action="store_true",
                   help="break a stale deploy lock left by a process that is gone (on purpose only)")


def _confirm(question: str) -> bool:
    sys.stderr.write(question)
    sys.stderr.flush()
    try:
        answer = sys.stdin.readline()
    except (EOFError, KeyboardInterrupt):
        return False
    return answer.strip().lower() in ("y", "yes")


async def execute(args, *, action: str, tag: str | None) -> int:
    # Imported here so `zdd-tui --help` stays fast and works without the cloud stack.
    from zdd_tui.config import load_config
    from zdd_tui.headless import HeadlessRenderer
    from zdd_tui.project import Project
    from zdd_tui.project.rollout import check_tag, exit_code_for
    from zdd_tui.rollout.events import OutcomeStatus

    if not args.yes and not sys.stdin.isatty():
        raise UsageError(f"refusing to {action} without confirmation: there is no terminal to ask on",
                         "pass --yes to run without asking (CI)")
    if tag is not None:
        check_tag(tag)
    config = load_config(args.config)
    async with await Project.open(config, context=getattr(args, "context", None)) as project:
        plan = await project.plan(action, tag, getattr(args, "strategy", None), getattr(args, "canary", None))
        if not args.yes:
            print(plan.text(), file=sys.stderr)
            if not plan.hosts:
                print(f"nothing to do: every host already runs {plan.to_tag}", file=sys.stderr)
                return 0
            if not _confirm(f"{action.capitalize()} {plan.to_tag} to {len(plan.hosts)} host(s)? [y/N] "):
                print("not confirmed: nothing was changed", file=sys.stderr)
                return 0
        cancel = asyncio.Event()
        loop = asyncio.get_running_loop()

        def on_signal() -> None:
            if cancel.is_set():
                return
            cancel.set()
            print("zdd-tui: stopping after the current step (the host in progress is finished or "
                  "restored)...", file=sys.stderr)

        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, on_signal)
            except (NotImplementedError, RuntimeError):  # event loops without signal support
                pass  # Ctrl-C then falls back to KeyboardInterrupt
        renderer = HeadlessRenderer(sys.stdout, json_lines=args.json)
        try:
            outcome = await project.run(plan, [renderer], cancel, break_lock=args.break_lock)
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                try:
                    loop.remove_signal_handler(sig)
                except (NotImplementedError, RuntimeError):
                    pass
        if outcome.status != OutcomeStatus.SUCCESS:
            # The message also goes to stderr, so a CI log shows why even with --json on stdout.
            # It may quote a host: in GitHub Actions none of its lines may be a workflow command.
            from zdd_tui.actions import escape_lines, in_actions

            said = f"zdd-tui: {action} {outcome.status.value}: {outcome.message}".replace(
                f"{outcome.status.value}: {outcome.status.value}:", f"{outcome.status.value}:")
            if outcome.seen and outcome.seen not in said:
                # What was seen (a release command's last lines, a host's output) belongs with
                # the reason: with --json it is in no other line a CI log shows.
                said += f"; seen: {outcome.seen}"
            print(escape_lines(said) if in_actions() else said, file=sys.stderr)
        return exit_code_for(outcome)
