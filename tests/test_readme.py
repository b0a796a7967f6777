"""README.md stays true: its config reference is what `zdd-tui init` writes, and CI runs exactly
the test command it gives."""

from __future__ import annotations

import re
from pathlib import Path

from zdd_tui.commands.init import project_config, render
from zdd_tui.config import parse_config

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def _code_blocks(lang: str = "") -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


def test_config_reference_is_what_init_writes_and_it_loads():
    [block] = [b for b in _code_blocks("yaml") if b.startswith("# zdd.yaml")]
    assert block == render(project_config(Path("/projects/myapp")))
    assert parse_config(block, "README.md").app == "myapp"


def test_ci_runs_exactly_the_readme_test_command():
    blocks = [b.strip() for b in _code_blocks() if "pytest" in b]
    assert blocks, "README gives no test command"
    command = blocks[0]
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert command in ci_lines


def test_readme_console_command_names_the_sandbox():
    assert "pip install -e . && zdd-tui --sandbox" in [b.strip() for b in _code_blocks()]
