"""The layers, as imports: front ends (ui, commands) -> the application layer (project) -> the
engine (rollout) and the adapters (cloud, hosts, images, setup, sandbox).

Read from the source with `ast` (imports inside functions count too), so a wrong import fails
here before anyone has to notice it in a review:
- ui/ imports only the project layer, itself, errors, config and the event vocabularies (plain
  data it renders);
- commands/ the same (the console command also starts ui/), plus the headless renderer;
- rollout/ imports no adapter and, from the config, plain data only (no loader);
- nothing imports commands/ except cli.py (and commands/ itself);
- nothing outside ui/ imports textual.
The checker is tested on a synthetic package too, so it is known to be able to fail.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "zdd_tui"

ADAPTERS = ("cloud", "hosts", "images", "setup", "sandbox", "proxy")
# Plain data the front ends render: the events of a rollout, of setup and of a build.
EVENT_MODULES = ("zdd_tui.events", "zdd_tui.rollout.events", "zdd_tui.setup.events", "zdd_tui.images.events")
FRONT_END_COMMON = ("zdd_tui.project", "zdd_tui.errors", "zdd_tui.config", "zdd_tui.text", *EVENT_MODULES)
HEADLESS_RENDERERS = ("zdd_tui.headless", "zdd_tui.actions")  # text and GitHub Actions output
CONFIG_LOADERS = ("load_config", "parse_config")


def imports(path: Path, module: str) -> list[tuple[int, str, tuple[str, ...]]]:
    """(line, imported module, names) for every import in the file, relative ones resolved."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name, ()) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join(parts + ([base] if base else []))
            names = tuple(a.name for a in node.names)
            found.append((node.lineno, base, names))
            # `from zdd_tui import operations` imports the module zdd_tui.operations
            found += [(node.lineno, f"{base}.{n}", ()) for n in names if base == PACKAGE]
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
            "import_module",
            "__import__",
        ):
            if node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                found.append((node.lineno, node.args[0].value, ()))
    return found


def _under(name: str, *prefixes: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def problem(module: str, target: str, names: tuple[str, ...]) -> str | None:
    """Why `module` must not import `target` (names: what `from target import ...` takes)."""
    layer = module.split(".")[1] if module.count(".") >= 1 else ""
    if _under(target, "textual") and layer != "ui":
        return "textual outside ui/"
    if not _under(target, PACKAGE) or (target == PACKAGE and not names):
        return None
    if target == PACKAGE:
        return None  # `from zdd_tui import x` is checked as zdd_tui.x
    if _under(target, "zdd_tui.commands") and layer != "commands" and module != "zdd_tui.cli":
        return "only cli.py imports the commands"
    if layer == "ui":
        if _under(target, "zdd_tui.ui", *FRONT_END_COMMON):
            return None
        return "ui/ calls the project layer, not the engine or the adapters"
    if layer == "commands":
        if _under(target, "zdd_tui.commands", *FRONT_END_COMMON, *HEADLESS_RENDERERS):
            return None
        if module == "zdd_tui.commands.console" and _under(target, "zdd_tui.ui"):
            return None
        return "commands/ call the project layer, not the engine or the adapters"
    if layer == "rollout":
        if _under(target, *(f"zdd_tui.{a}" for a in ADAPTERS), "zdd_tui.project", "zdd_tui.ui"):
            return "the engine imports no adapter"
        if target == "zdd_tui.config" and (not names or set(names) & set(CONFIG_LOADERS)):
            return "the engine takes plain config data, not the loader"
        return None
    if layer in ADAPTERS and _under(target, "zdd_tui.project", "zdd_tui.ui"):
        return "adapters do not call up into the project layer or the console"
    if layer == "project" and _under(target, "zdd_tui.ui"):
        return "the project layer does not know the console"
    return None


def violations(root: Path) -> list[str]:
    out = []
    for path in sorted((root / PACKAGE).rglob("*.py")):
        rel = path.relative_to(root).with_suffix("")
        parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
        module = ".".join(parts)
        for line, target, names in imports(path, module):
            why = problem(module, target, names)
            if why:
                out.append(f"{path.relative_to(root)}:{line} imports {target}: {why}")
    return out


def test_the_layers_hold():
    assert violations(ROOT) == []


def test_the_scan_sees_the_layers():
    # Guards against scanning nothing (a moved package, a bad glob).
    seen = {t for p in (ROOT / PACKAGE / "ui").rglob("*.py") for _, t, _ in imports(p, "zdd_tui.ui.x")}
    assert "zdd_tui.project" in seen or any(t.startswith("zdd_tui.project.") for t in seen)


def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = tmp_path / PACKAGE / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


def test_checker_catches_wrong_imports(tmp_path):
    root = _package(tmp_path, {
        "__init__.py": "",
        "cli.py": "from zdd_tui.commands import status\n",  # allowed
        "ui/__init__.py": "",
        "ui/ok.py": "from zdd_tui.project import Project\nfrom zdd_tui.rollout.events import Plan\n",
        "ui/bad.py": "def f():\n    from zdd_tui.cloud.client import DOClient\n",
        "ui/sneaky.py": "from ..rollout import engine\n",
        "ui/lazy.py": "import importlib\nimportlib.import_module('zdd_tui.hosts.runtime')\n",
        "commands/__init__.py": "",
        "commands/deploy.py": "from zdd_tui import operations\nfrom zdd_tui.images.build import ImageBuilder\n",
        "commands/build.py": "from zdd_tui.images.events import BuildOutput, PushFinished\n",  # events: allowed
        "rollout/__init__.py": "",
        "rollout/engine.py": "from zdd_tui.config import DeployConfig, load_config\nimport zdd_tui.sandbox.runtime\n",
        "rollout/plan.py": "from zdd_tui.config import DeployConfig\n",  # plain data: allowed
        "hosts/__init__.py": "",
        "hosts/runtime.py": "from zdd_tui.commands.build import x\nimport textual\n",
        "project/__init__.py": "from zdd_tui.cloud.client import DOClient\n",  # allowed
    })
    found = violations(root)
    flagged = sorted({line.split(":")[0] for line in found})
    assert flagged == [
        "zdd_tui/commands/deploy.py",
        "zdd_tui/hosts/runtime.py",
        "zdd_tui/rollout/engine.py",
        "zdd_tui/ui/bad.py",
        "zdd_tui/ui/lazy.py",
        "zdd_tui/ui/sneaky.py",
    ], found
    text = "\n".join(found)
    assert "zdd_tui/commands/deploy.py:1 imports zdd_tui.operations" in text
    assert "zdd_tui/commands/deploy.py:2 imports zdd_tui.images.build" in text
    assert "the engine takes plain config data" in text and "the engine imports no adapter" in text
    assert "only cli.py imports the commands" in text and "textual outside ui/" in text
    assert "zdd_tui/ui/sneaky.py:1 imports zdd_tui.rollout" in text
