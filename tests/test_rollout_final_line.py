"""The last line `deploy` and `rollback` print on stderr when a rollout does not succeed: it
quotes what a host or the cloud said, so in GitHub Actions no line of it may be taken for a
workflow command (the runner reads commands on stderr as on stdout)."""

from __future__ import annotations

import argparse
import re
from types import SimpleNamespace

from zdd_tui.commands._rollout import execute
from zdd_tui.errors import EXIT_REFUSED
from zdd_tui.project import Project
from zdd_tui.rollout.events import Outcome, OutcomeStatus

COMMAND = re.compile(r"\s*(::|##\[)")
SAID = "the release command exited with 1 on app-1\n::add-mask::oops\n   ##[set-env name=X]y"


class Refusing:
    """A project whose rollout is refused with a message quoting a host's output."""

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        return None

    async def plan(self, action, tag, strategy, canary=None):
        return SimpleNamespace(hosts=(), text=lambda: "")

    seen = ""

    async def run(self, plan, listeners, cancel, break_lock=False):
        return Outcome(OutcomeStatus.REFUSED, SAID, "sha-bbbbbbb", seen=self.seen)


async def _final_lines(monkeypatch, tmp_path, capsys, seen: str = "") -> list[str]:
    async def opened(config, context=None):
        project = Refusing()
        project.seen = seen
        return project

    monkeypatch.setattr(Project, "open", opened)
    (tmp_path / "zdd.yaml").write_text("app: svc\n")
    args = argparse.Namespace(config=str(tmp_path / "zdd.yaml"), context=None, yes=True, json=True,
                              strategy=None, canary=None, break_lock=False)
    assert await execute(args, action="deploy", tag=None) == EXIT_REFUSED
    return capsys.readouterr().err.splitlines()


async def test_in_actions_no_line_of_it_is_a_workflow_command(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    lines = await _final_lines(monkeypatch, tmp_path, capsys)
    assert lines[0] == "zdd-tui: deploy refused: the release command exited with 1 on app-1"
    assert lines[1:] == ["\\::add-mask::oops", "\\   ##[set-env name=X]y"]  # shown, not obeyed
    assert not [line for line in lines if COMMAND.match(line)]


async def test_outside_actions_it_is_unchanged(monkeypatch, tmp_path, capsys):
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    lines = await _final_lines(monkeypatch, tmp_path, capsys)
    assert lines[1:] == ["::add-mask::oops", "   ##[set-env name=X]y"]


async def test_what_was_seen_goes_with_the_reason(monkeypatch, tmp_path, capsys):
    """A release command's last lines are the outcome's `seen`: with --json on stdout, stderr's
    last line is where a CI log shows them."""
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    lines = await _final_lines(monkeypatch, tmp_path, capsys, seen="relation users already exists | exit 1")
    assert lines[-1] == "   ##[set-env name=X]y; seen: relation users already exists | exit 1"
