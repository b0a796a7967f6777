"""The tier gate: a tier without its tools skips naming them, and fails instead where CI=true."""

from __future__ import annotations

import os

import pytest
import tiers

MISSING = "zdd-no-such-tool"


@pytest.fixture
def no_ci(monkeypatch):
    monkeypatch.delenv("CI", raising=False)


def test_found_tools_come_back_as_full_paths(no_ci):
    found = tiers.require_tools("sh", why="a shell", apt="dash")
    assert os.path.isabs(found["sh"]) and os.access(found["sh"], os.X_OK)


def test_missing_tools_skip_naming_them_and_the_packages(no_ci):
    with pytest.raises(pytest.skip.Exception) as info:
        tiers.require_tools("sh", MISSING, why="a made-up tier", apt="zdd-made-up-package")
    reason = str(info.value)
    assert reason.startswith("a made-up tier needs zdd-no-such-tool, not found on PATH")
    assert "apt-get install zdd-made-up-package" in reason and "sh," not in reason


@pytest.mark.parametrize("value", ["true", "TRUE", "true\n"])
def test_missing_tools_fail_where_ci_is_true(monkeypatch, value):
    monkeypatch.setenv("CI", value)
    with pytest.raises(pytest.fail.Exception) as info:
        tiers.require_tools(MISSING, why="a made-up tier", apt="zdd-made-up-package")
    assert "zdd-no-such-tool" in str(info.value) and "apt-get install zdd-made-up-package" in str(info.value)


@pytest.mark.parametrize("value", ["", "false", "0"])
def test_other_ci_values_still_skip(monkeypatch, value):
    monkeypatch.setenv("CI", value)
    with pytest.raises(pytest.skip.Exception):
        tiers.require_tools(MISSING, why="a made-up tier", apt="zdd-made-up-package")


def test_a_tier_decides_by_path_not_by_who_runs_it(no_ci, monkeypatch, tmp_path):
    # An empty PATH hides even a tool every machine has.
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(pytest.skip.Exception, match="needs sh, not found on PATH"):
        tiers.require_tools("sh", why="a shell", apt="dash")


def test_not_root_skips_and_fails_where_ci_is_true(monkeypatch):
    monkeypatch.setattr(tiers.os, "geteuid", lambda: 1000)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"a made-up tier needs root \(running as uid 1000\)"):
        tiers.require_root("a made-up tier")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="needs root"):
        tiers.require_root("a made-up tier")


def test_root_passes(monkeypatch):
    monkeypatch.setattr(tiers.os, "geteuid", lambda: 0)
    monkeypatch.setenv("CI", "true")
    tiers.require_root("a made-up tier")
