"""The project's git state: HEAD's short sha (7) and whether the tree is dirty."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from zdd_tui.errors import UsageError


@dataclass(frozen=True)
class GitState:
    sha: str  # 7 hex digits
    dirty: bool
    changed: tuple[str, ...] = ()  # porcelain lines, for the refusal message


def _git(repo: Path, *args: str) -> str:
    try:
        res = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        raise UsageError("git is not installed", "install git: the image tag comes from the commit sha") from None
    if res.returncode != 0:
        raise UsageError(
            f"git {' '.join(args)} failed in {repo}: {res.stderr.strip() or res.returncode}",
            "run the build inside a git repository with at least one commit",
        )
    return res.stdout


def head_sha(repo: str | Path = ".") -> str:
    return _git(Path(repo), "rev-parse", "--short=7", "HEAD").strip()[:7]


def git_state(repo: str | Path = ".") -> GitState:
    repo = Path(repo)
    sha = head_sha(repo)
    # Untracked files count: they can end up in the build context.
    lines = tuple(line for line in _git(repo, "status", "--porcelain", "--untracked-files=normal").splitlines()
                  if line.strip())
    return GitState(sha=sha, dirty=bool(lines), changed=lines)
