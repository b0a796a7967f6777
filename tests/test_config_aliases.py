"""YAML anchors and aliases in zdd.yaml are refused: nested aliases make a tree exponentially
larger than the text, and walking it (the secret scan, validation) would hang the tool on a
few hundred bytes. Each file is loaded in a process of its own under a generous time limit, so a
regression fails by timing out instead of hanging the suite."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from zdd_tui.config import ConfigError, parse_config

LIMIT = 20.0  # seconds; the refusal takes milliseconds, following the aliases takes hours


def bomb(levels: int, width: int = 9) -> str:
    """Each level a list of `width` aliases of the one before: width**levels scalars."""
    lines = ['a0: &a0 ["x","x","x","x","x","x","x","x","x"]']
    lines += [f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * width) + "]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


def _load_in_a_process(tmp_path, text: str) -> tuple[subprocess.CompletedProcess, float]:
    path = tmp_path / "zdd.yaml"
    path.write_text(text)
    code = (
        "import sys\n"
        "from zdd_tui.config import ConfigError, load_config\n"
        "try:\n"
        "    load_config(sys.argv[1])\n"
        "except ConfigError as e:\n"
        "    print(e)\n"
        "    sys.exit(2)\n"
    )
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=LIMIT)
    return proc, time.monotonic() - t0


@pytest.mark.parametrize("levels", [6, 12])
def test_a_nested_alias_file_is_refused_quickly(tmp_path, levels):
    text = bomb(levels)
    assert len(text) < 900  # 6 levels: the issue's 280-byte shape
    proc, _ = _load_in_a_process(tmp_path, text)  # raises TimeoutExpired if the aliases are followed
    assert proc.returncode == 2, proc.stderr
    assert "zdd.yaml:1:5: a0: expected no YAML anchors or aliases (&name, *name); found an anchor &a0" in proc.stdout


def test_a_bomb_inside_a_valid_config_and_before_a_syntax_error(tmp_path):
    text = "app: shop\nbuild:\n  args:\n    " + bomb(10).replace("\n", "\n    ").rstrip() + "\n  oops: [\n"
    proc, _ = _load_in_a_process(tmp_path, text)
    assert proc.returncode == 2, proc.stderr
    assert ":4:9: build.args.a0: expected no YAML anchors or aliases" in proc.stdout


def test_an_alias_is_named_where_it_is():
    with pytest.raises(ConfigError) as err:
        parse_config('service:\n  env:\n    A: "1"\nbuild:\n  args: *nothing\n')
    issue = err.value.issues[0]
    assert (issue.line, issue.key, issue.found) == (5, "build.args", "an alias *nothing")
    with pytest.raises(ConfigError, match=r"zdd.yaml:2:14: droplets.names\[1\]: expected no YAML anchors"):
        parse_config("droplets:\n  names: [a, &b b]\n")
    assert "write each value out in full" in str(err.value)


def test_the_command_line_says_so(tmp_path):
    (tmp_path / "zdd.yaml").write_text(bomb(12))
    proc = subprocess.run([sys.executable, "-m", "zdd_tui", "status"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=LIMIT)
    assert proc.returncode == 2
    assert proc.stderr.startswith("zdd-tui: error: zdd.yaml:1:5: a0: expected no YAML anchors or aliases")
