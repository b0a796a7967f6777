"""`zdd-tui ci github` and the headless output in GitHub Actions.

The workflow is checked with a real validator (check-jsonschema's bundled GitHub-workflow schema,
as a subprocess) and its commands with zdd-tui's own parser. The Actions output is checked on a
real event stream (a rollout on the engine tests' fake world) and on a synthetic one with hostile
text: groups are well formed, every line sits in its own host's group, nothing from outside is
taken for a workflow command, and the step summary is a table with escaped cells."""

from __future__ import annotations

import io
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from rollout.fakes import FakeClock, World, fake_project

from zdd_tui.actions import cell, escape_line
from zdd_tui.cli import build_parser, main
from zdd_tui.commands.init import project_config, render
from zdd_tui.config import Config
from zdd_tui.errors import UsageError
from zdd_tui.events import LogLine
from zdd_tui.headless import HeadlessRenderer
from zdd_tui.project.ci import workflow
from zdd_tui.rollout.events import (
    Outcome,
    OutcomeStatus,
    Phase,
    PhaseChanged,
    Plan,
    PlannedHost,
    RolloutFinished,
    RolloutPlanned,
)

COMMAND = re.compile(r"\s*(::|##\[)")


def git_repo(path: Path, branch: str = "trunk") -> Path:
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "init", "-q", "-b", branch, "."], cwd=path, check=True)
    return path


def validate(path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows",
                          str(path)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def config_with_secrets(names: tuple[str, ...]):
    """A config whose service names application secrets (service.secrets)."""
    cfg = Config()
    return SimpleNamespace(app=cfg.app, service=SimpleNamespace(secrets=names))


def test_ci_github_writes_a_valid_workflow_and_names_the_secrets(tmp_path):
    repo = git_repo(tmp_path / "shop")
    cfg = repo / "zdd.yaml"
    cfg.write_text(render(project_config(repo)))
    proc = subprocess.run([sys.executable, "-m", "zdd_tui", "ci", "github", "--config", str(cfg)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    path = repo / ".github" / "workflows" / "zdd-deploy.yml"
    assert f"wrote {path}" in proc.stdout and "'trunk'" in proc.stdout
    for name in ("DIGITALOCEAN_TOKEN", "ZDD_SSH_PRIVATE_KEY", "ZDD_KNOWN_HOSTS"):
        assert name in proc.stdout
    validate(path)
    wf = yaml.safe_load(path.read_text())
    assert wf["on"] == {"push": {"branches": ["trunk"]}, "workflow_dispatch": None}
    assert wf["concurrency"] == {"group": "zdd-deploy-shop", "cancel-in-progress": False}
    steps = wf["jobs"]["deploy"]["steps"]
    runs = [s.get("run", "") for s in steps]
    assert "zdd-tui build --push --json" in runs and "zdd-tui deploy --yes --json" in runs
    deploy = steps[runs.index("zdd-tui deploy --yes --json")]
    assert deploy["env"] == {"DIGITALOCEAN_TOKEN": "${{ secrets.DIGITALOCEAN_TOKEN }}",
                             "ZDD_SSH_PRIVATE_KEY": "${{ secrets.ZDD_SSH_PRIVATE_KEY }}"}
    build = steps[runs.index("zdd-tui build --push --json")]
    assert build["env"] == {"DIGITALOCEAN_TOKEN": "${{ secrets.DIGITALOCEAN_TOKEN }}"}  # no SSH key to build

    # Never overwritten without --force.
    path.write_text(path.read_text() + "# mine\n")
    again = subprocess.run([sys.executable, "-m", "zdd_tui", "ci", "github", "--config", str(cfg)],
                           capture_output=True, text=True)
    assert again.returncode == 4 and "already exists; nothing was written" in again.stderr
    assert path.read_text().endswith("# mine\n")
    assert main(["ci", "github", "--force", "--config", str(cfg)]) == 0
    assert not path.read_text().endswith("# mine\n")


def test_the_workflow_s_commands_are_ones_zdd_tui_takes():
    parser = build_parser(eager=True)
    wf = workflow(Config(), branch="main", config_arg="deploy/zdd.yaml", working_directory="svc",
                  install="zdd-tui==0.1.0")
    zdd = [s["run"] for s in wf["jobs"]["deploy"]["steps"] if s.get("run", "").startswith("zdd-tui ")]
    assert len(zdd) == 2
    for run in zdd:
        args = parser.parse_args(shlex.split(run)[1:])
        assert args.json and args.config == "deploy/zdd.yaml"
        assert (args.command, args.push if args.command == "build" else args.yes) in (("build", True), ("deploy", True))
    assert wf["jobs"]["deploy"]["defaults"] == {"run": {"working-directory": "svc"}}


def test_application_secrets_come_from_repository_secrets_by_name(tmp_path):
    wf = workflow(config_with_secrets(("DB_PASSWORD", "STRIPE_KEY")), branch="main", config_arg=None,
                  working_directory=None, install="zdd-tui")
    path = tmp_path / "wf.yml"
    path.write_text(yaml.safe_dump(wf, sort_keys=False))
    validate(path)
    deploy = wf["jobs"]["deploy"]["steps"][-1]
    assert deploy["env"]["ZDD_SECRET_DB_PASSWORD"] == "${{ secrets.ZDD_SECRET_DB_PASSWORD }}"
    assert deploy["env"]["ZDD_SECRET_STRIPE_KEY"] == "${{ secrets.ZDD_SECRET_STRIPE_KEY }}"
    # Names that would break out of the expression, or are no secret names, are refused.
    for bad in ("X }}${{ github.token", "a-b", "A B"):
        with pytest.raises(UsageError):
            workflow(config_with_secrets((bad,)), branch="main", config_arg=None, working_directory=None,
                     install="zdd-tui")


def test_a_project_in_a_subdirectory_runs_there(tmp_path):
    repo = git_repo(tmp_path / "mono", branch="main")
    svc = repo / "services" / "api"
    svc.mkdir(parents=True)
    (svc / "prod.yaml").write_text(render(project_config(svc)))
    assert main(["ci", "github", "--branch", "release/1.x", "--config", str(svc / "prod.yaml")]) == 0
    path = repo / ".github" / "workflows" / "zdd-deploy.yml"
    validate(path)
    wf = yaml.safe_load(path.read_text())
    assert wf["on"]["push"]["branches"] == ["release/1.x"]
    assert wf["jobs"]["deploy"]["defaults"]["run"]["working-directory"] == "services/api"
    assert "zdd-tui deploy --yes --json --config prod.yaml" in [s.get("run") for s in wf["jobs"]["deploy"]["steps"]]
    assert main(["ci", "github", "--force", "--branch", "main\nx: y", "--config", str(svc / "prod.yaml")]) == 2


# -- headless output in GitHub Actions -------------------------------------------------------------


def actions_env(monkeypatch, tmp_path) -> Path:
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step's summary\n")
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    return summary


def groups(lines: list[str]) -> list[tuple[str, list[str]]]:
    """(title, lines) of each group; asserts groups are never nested or left open mid-stream."""
    out: list[tuple[str, list[str]]] = []
    current: list[str] | None = None
    for line in lines:
        if line.startswith("::group::"):
            assert current is None, "nested group"
            current = []
            out.append((line.removeprefix("::group::"), current))
        elif line == "::endgroup::":
            assert current is not None, "endgroup without group"
            current = None
        else:
            assert not COMMAND.match(line), f"taken for a workflow command: {line!r}"
            if current is not None:
                current.append(line)
    return out


@pytest.mark.parametrize("json_lines", [False, True])
async def test_a_real_rollout_in_actions_gives_host_groups_and_a_summary(monkeypatch, tmp_path, json_lines):
    summary = actions_env(monkeypatch, tmp_path)
    world = World(FakeClock(), names=("app-1", "app-2", "app-3"))
    world.add_version("sha-bbbbbbb")
    project = fake_project(world, Config(), lag=0.0)
    out = io.StringIO()
    renderer = HeadlessRenderer(out, json_lines=json_lines)
    plan = await world.clock.run(project.plan("deploy", "sha-bbbbbbb"))
    outcome = await world.clock.run(project.run(plan, [renderer]))
    assert outcome.status is OutcomeStatus.SUCCESS
    lines = out.getvalue().splitlines()
    found = groups(lines)
    assert {title for title, _ in found} == {"app-1", "app-2", "app-3"}
    for title, body in found:
        assert body
        for line in body:  # every line in a group is about that group's host
            if json_lines:
                assert json.loads(line)["host"] == title
            else:
                assert f"] {title} " in line
    # (So the plan and the outcome, about no host, are outside every group.)
    text = summary.read_text()
    assert text.startswith("earlier step's summary\n")  # appended
    assert "### zdd-tui deploy sha-bbbbbbb: success" in text
    assert "| Host | From | To | Runs now | Started (UTC) | Ended (UTC) | Took | Result |" in text
    for host in ("app-1", "app-2", "app-3"):
        row = next(line for line in text.splitlines() if line.startswith(f"| {host} |"))
        cells = [c.strip() for c in row.strip("|").split(" | ")]
        assert cells[1:4] == ["sha-aaaaaaa", "sha-bbbbbbb", "sha-bbbbbbb"] and cells[-1] == "done"
        assert re.fullmatch(r"\d\d:\d\d:\d\d", cells[4]) and re.fullmatch(r"\d+s", cells[6])
    assert "Failed requests seen: not measured" in text


def test_outside_text_is_never_a_workflow_command_and_cells_are_escaped(monkeypatch, tmp_path):
    summary = actions_env(monkeypatch, tmp_path)
    out = io.StringIO()
    r = HeadlessRenderer(out)
    evil = "ev|l<img src=x>"
    plan = Plan(rollout_id="r1", action="deploy", to_tag="sha-b", image_ref="reg/app:sha-b",
                hosts=(PlannedHost("app-1", "10.0.0.1", "sha-a", 0), PlannedHost(evil, "10.0.0.2", "sha-a", 0)),
                batch_size=2, estimated_seconds=10, estimate_basis="test")
    events = [
        RolloutPlanned(plan, at=0.0),
        PhaseChanged("app-1", Phase.STARTING, at=1.0),
        PhaseChanged(evil, Phase.STARTING, at=1.5),
        LogLine("app-1", "::add-mask::leak", at=2.0),
        LogLine("app-1", "   ##[set-env name=X]y", at=2.1),
        LogLine(evil, "::stop-commands::zzz", at=2.2),
        LogLine(None, "::warning::from a hook", at=2.3),
        PhaseChanged("app-1", Phase.DONE, at=5.0),
        PhaseChanged(evil, Phase.FAILED, "exit 3\n::error::multi-line", at=6.0),
        RolloutFinished(Outcome(OutcomeStatus.HALTED, "halted on ev|l\n::error::x", "sha-b", failed_host=evil,
                                failed_step=Phase.STARTING, seen="a | b\n::c", fleet={"app-1": "sha-b", evil: "sha-a"},
                                duration_seconds=6.0), at=6.5),
    ]
    for ev in events:
        r(ev)
    lines = out.getvalue().splitlines()
    found = groups(lines)  # asserts no line is a command
    # Interleaved hosts: a group per run of lines about one host, never nested, each under its name.
    assert [t for t, _ in found] == ["app-1", evil, "app-1", evil, "app-1", evil]
    # A host's text that starts a line of its own (a detail, a message over several lines) is escaped.
    assert "\\::error::multi-line" in lines and "\\::error::x" in lines
    assert escape_line("   ##[set-env name=X]y") == "\\   ##[set-env name=X]y"
    assert escape_line("::add-mask::leak") == "\\::add-mask::leak" and escape_line("a ::b") == "a ::b"
    text = summary.read_text()
    row = next(line for line in text.splitlines() if line.startswith("| ev"))
    assert row.startswith("| ev\\|l&lt;img src=x&gt; | sha-a | sha-b | sha-a |")
    assert row.endswith("| failed |")
    assert "<img" not in text and "\n::" not in text
    assert "halted on ev\\|l ::error::x" in text  # one line, the bar escaped
    assert cell("a|b\nc") == "a\\|b c" and cell("*x* [y](z)") == "\\*x\\* \\[y\\](z)"


def test_without_actions_the_output_is_unchanged(monkeypatch, tmp_path):
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(tmp_path / "s.md"))
    out = io.StringIO()
    r = HeadlessRenderer(out)
    r(LogLine("app-1", "::add-mask::x", at=1.0))
    assert "::group::" not in out.getvalue() and not (tmp_path / "s.md").exists()
