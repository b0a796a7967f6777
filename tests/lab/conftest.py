"""Fixtures of the lab tier: one lab per session, always torn down (see labkit.py)."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tiers

import labkit

_LAB_DIR = os.path.dirname(os.path.abspath(__file__))


def pytest_collection_modifyitems(config, items):
    for item in items:
        if str(item.fspath).startswith(_LAB_DIR + os.sep):
            item.add_marker(pytest.mark.lab)
            item.add_marker(pytest.mark.slow)


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "steps: the module's tests are the ordered steps of one scenario; once one fails, "
                   "the later ones skip, naming it")


# module node id -> the name of its first step that failed (modules marked `steps`)
_FAILED_STEP: dict[str, str] = {}


def _module_id(item) -> str:
    return item.nodeid.split("::", 1)[0]


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    """A step after a failed one skips before its fixtures run: it would build on what is not there."""
    failed = _FAILED_STEP.get(_module_id(item))
    if failed and item.get_closest_marker("steps"):
        pytest.skip(f"skipped: the earlier step '{failed}' failed")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.when == "call" and rep.failed and item.get_closest_marker("steps"):
        _FAILED_STEP.setdefault(_module_id(item), item.name)


def _in_lab(item) -> bool:
    return item is not None and str(item.fspath).startswith(_LAB_DIR + os.sep)


_ACTIVE: dict = {}  # "finish": tears the session's lab down (idempotent)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item, nextitem):
    """Tear the lab down right after the last lab test (not at the end of the whole session), so
    its daemons and containers do not run on while the other suites do."""
    result = yield
    if _in_lab(item) and not _in_lab(nextitem) and "finish" in _ACTIVE:
        _ACTIVE.pop("finish")()
    return result


def pytest_terminal_summary(terminalreporter):
    if labkit.REPORT:
        terminalreporter.section("zdd-tui lab")
        for line in labkit.REPORT:
            terminalreporter.write_line(line)


report = labkit.report


def require_root_and_tools() -> None:
    tiers.require_root("the lab (network namespaces, a bridge, sshd and dockerd)")
    tiers.require_tools(*labkit.TOOLS, why="the lab", apt=labkit.APT_PACKAGES)


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """A CI timeout's SIGTERM unwinds like Ctrl-C, so the finalizers still tear the lab down."""
    def handler(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


@pytest.fixture(scope="session")
def lab_lock():
    """The lab lock for this session (and a clean slate: a crashed run's leftovers are removed)."""
    require_root_and_tools()
    with labkit.lab_lock() as got:
        if not got:
            pytest.skip(f"another lab session holds {labkit.LOCK_PATH}: not running two labs at once")
        found = labkit.clean_previous_runs()
        if any(found.values()):
            report(f"cleaned a previous run's leftovers: {found}")
        with _sigterm_as_interrupt():
            yield


@pytest.fixture(scope="session")
def lab(lab_lock):
    """The lab: 3 hosts (sshd + Docker engine each), a builder engine, a registry, a keyring."""
    t0 = time.monotonic()
    the_lab = labkit.Lab(hosts_count=3, subnet_index=0)
    try:
        the_lab.up()
    except BaseException:
        left = the_lab.down()
        report(the_lab.print_timings("lab timings (failed bring-up)"))
        if any(left.values()):
            report(f"LEFTOVERS after a failed bring-up: {left}")
        raise
    report(the_lab.print_timings("lab timings (bring-up)"))
    done = []

    def finish() -> None:
        if done:
            return
        done.append(True)
        left = the_lab.down()
        report(f"lab down: {the_lab.timings.get('lab down', 0):.2f} s; lab duration (up + tests + down): "
               f"{time.monotonic() - t0:.1f} s")
        if any(left.values()):
            report(f"LEFTOVERS after teardown: {left}")
            pytest.fail(f"the lab left things behind: {left}", pytrace=False)

    _ACTIVE["finish"] = finish
    try:
        yield the_lab
    finally:
        _ACTIVE.pop("finish", None)
        finish()
