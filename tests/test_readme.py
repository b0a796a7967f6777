"""README.md stays true: its config reference is generated from the schema (exactly what `zdd-tui
init` writes), and CI runs exactly the test command it gives.

`python tests/test_readme.py` rewrites README's generated config reference after a schema change.
"""

from __future__ import annotations

import re
from pathlib import Path

from zdd_tui.commands.init import project_config, render
from zdd_tui.config import parse_config, schema_paths

ROOT = Path(__file__).resolve().parent.parent
README_PATH = ROOT / "README.md"
README = README_PATH.read_text()
BEGIN = "<!-- generated from zdd_tui/config.py: `python tests/test_readme.py` rewrites it -->\n"
END = "<!-- end of generated text -->\n"


def config_reference() -> str:
    """README's generated config reference: `zdd-tui init`'s output for a project named myapp."""
    return "```yaml\n" + render(project_config(Path("/projects/myapp"))) + "```\n"


def _generated(text: str) -> str:
    return text.split(BEGIN, 1)[1].split(END, 1)[0]


def _code_blocks(lang: str = "") -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


def test_config_reference_is_generated_from_the_schema_and_loads():
    assert README.count(BEGIN) == 1 and README.count(END) == 1
    assert _generated(README) == config_reference(), "README is stale: run `python tests/test_readme.py`"
    [block] = [b for b in _code_blocks("yaml") if b.startswith("# zdd.yaml")]
    assert parse_config(block, "README.md").app == "myapp"


def test_config_reference_names_every_key():
    reference = _generated(README)
    for path in schema_paths():
        if not path.startswith("sandbox."):  # written by `zdd-tui sandbox up` only; the text says so
            indent = "  " * path.count(".")
            assert f"\n{indent}{path.rsplit('.', 1)[-1]}: " in reference, path


def test_ci_runs_exactly_the_readme_test_command():
    blocks = [b.strip() for b in _code_blocks() if "pytest" in b]
    assert blocks, "README gives no test command"
    command = blocks[0]
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert command in ci_lines


def test_readme_console_command_names_the_sandbox():
    assert "pip install -e . && zdd-tui --sandbox" in [b.strip() for b in _code_blocks()]


if __name__ == "__main__":
    head, rest = README.split(BEGIN, 1)
    README_PATH.write_text(head + BEGIN + config_reference() + END + rest.split(END, 1)[1])
    print(f"rewrote the config reference in {README_PATH}")
