"""Whether a test tier can run here, decided by what this machine has: tools on PATH, root.

A tier that lacks something skips with the reason (what is missing and the apt-get line that
installs it). Where CI=true (`.ci/run`) it fails instead, with the same reason: a CI machine that
lost a package must not pass by skipping.
"""

from __future__ import annotations

import os
import shutil

import pytest


def strict() -> bool:
    """CI=true: a tier that cannot run is a failure, not a skip."""
    return os.environ.get("CI", "").strip().lower() == "true"


def refuse(reason: str) -> None:
    """Skip this test (or fail it where CI=true) for `reason`."""
    if strict():
        pytest.fail(f"{reason} (CI=true: a tier that cannot run fails here)", pytrace=False)
    pytest.skip(reason)


def require_tools(*names: str, why: str, apt: str) -> dict[str, str]:
    """The full path of each tool, found on PATH; refuses naming the missing ones.

    why: what needs them ("a real OpenSSH server"); apt: the Debian packages that install them.
    """
    found = {name: shutil.which(name) for name in names}
    missing = [name for name, path in found.items() if path is None]
    if missing:
        refuse(f"{why} needs {', '.join(missing)}, not found on PATH (apt-get install {apt})")
    return {name: path for name, path in found.items() if path is not None}


def require_root(why: str) -> None:
    """Refuses unless this process runs as root."""
    if os.geteuid() != 0:
        refuse(f"{why} needs root (running as uid {os.geteuid()})")
