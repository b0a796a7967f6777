"""Nothing outside zdd_tui/ui imports Textual: the engine, adapters and
headless commands must stay usable without it, and the console stays one replaceable layer.

Reads every module's source with `ast` (imports inside functions count too), and also imports
the headless CLI in a fresh interpreter to check Textual is not pulled in indirectly.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PKG = ROOT / "zdd_tui"


def textual_imports(path: Path) -> list[int]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            if any(a.name == "textual" or a.name.startswith("textual.") for a in node.names):
                lines.append(node.lineno)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "textual" or node.module.startswith("textual."):
                lines.append(node.lineno)
        elif isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) in (
            "import_module",
            "__import__",
        ):
            if node.args and isinstance(node.args[0], ast.Constant) and str(node.args[0].value).startswith("textual"):
                lines.append(node.lineno)
    return lines


def test_detector_finds_textual_imports(tmp_path):
    # The check itself must be able to fail: every import form it claims to catch.
    sample = tmp_path / "m.py"
    sample.write_text(
        "import textual\nfrom textual.app import App\ndef f():\n    import textual.widgets as w\n"
        "import importlib\nimportlib.import_module('textual.screen')\nimport textualize_other\n"
    )
    assert textual_imports(sample) == [1, 2, 4, 6]


def test_nothing_outside_ui_imports_textual():
    offenders = []
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(PKG)
        if rel.parts[0] == "ui":
            continue
        for line in textual_imports(path):
            offenders.append(f"zdd_tui/{rel}:{line}")
    assert offenders == [], "textual imported outside zdd_tui/ui: " + ", ".join(offenders)


def test_ui_does_import_textual():
    # Guards the scan above against silently scanning nothing (a moved package, a bad glob).
    assert any(textual_imports(p) for p in (PKG / "ui").rglob("*.py"))


@pytest.mark.parametrize("module", ["zdd_tui.cli", "zdd_tui.project", "zdd_tui.project.rollout",
                                    "zdd_tui.project.status", "zdd_tui.rollout.engine"])
def test_headless_modules_do_not_load_textual(module):
    code = (
        "import importlib, sys\n"
        f"importlib.import_module({module!r})\n"
        "print('textual' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    if out.returncode != 0 and "No module named 'zdd_tui." in out.stderr:
        # Another team's part has not landed yet; the AST scan above still covers the tree.
        pytest.skip(f"{module}: {out.stderr.strip().splitlines()[-1]}")
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "False", f"importing {module} loaded textual"
