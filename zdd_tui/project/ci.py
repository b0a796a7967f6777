"""The GitHub Actions workflow `zdd-tui ci github` writes: on a push to the default branch and by
hand, build and push the image, then deploy it with `--yes --json`, one run at a time.

The workflow is a dict dumped with yaml.safe_dump: no value is pasted into YAML text. What goes
into a `run:` line is shell-quoted; what goes into a `${{ secrets.NAME }}` expression is checked
to be a plain secret name. The job gets credentials only from the repository's secrets, by name:
DIGITALOCEAN_TOKEN (build and deploy), ZDD_SSH_PRIVATE_KEY and each ZDD_SECRET_<NAME> of
`service.secrets` (deploy only). The hosts' SSH keys, which are not secret, come from the
repository variable ZDD_KNOWN_HOSTS (the lines of the known_hosts file setup pinned them in):
a runner starts with none, and zdd-tui never trusts a host key it has not pinned.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from zdd_tui import __version__
from zdd_tui.config import Config
from zdd_tui.errors import UsageError

WORKFLOW_PATH = Path(".github") / "workflows" / "zdd-deploy.yml"
TOKEN_SECRET = "DIGITALOCEAN_TOKEN"
SSH_KEY_SECRET = "ZDD_SSH_PRIVATE_KEY"
SECRET_PREFIX = "ZDD_SECRET_"
KNOWN_HOSTS_VARIABLE = "ZDD_KNOWN_HOSTS"
PYTHON = "3.12"
# GitHub's rule for secret names: letters, digits and '_', not starting with a digit or GITHUB_.
_SECRET_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_BRANCH = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._/-]{0,199}")

_PIN_HOSTS = f"""\
if [ -z "$KNOWN_HOSTS" ]; then
  echo "The repository variable {KNOWN_HOSTS_VARIABLE} is empty: set it to the lines of the known_hosts file \
'zdd-tui setup' pinned the hosts' SSH keys in." >&2
  exit 1
fi
printf '%s\\n' "$KNOWN_HOSTS" > "$RUNNER_TEMP/zdd-known-hosts"
echo "ZDD_KNOWN_HOSTS=$RUNNER_TEMP/zdd-known-hosts" >> "$GITHUB_ENV"
"""


@dataclass(frozen=True)
class Workflow:
    path: Path  # where it goes (the repository's root / .github/workflows/...)
    text: str
    branch: str
    branch_source: str  # how the branch was found, in words
    secrets: tuple[str, ...]  # repository secrets it reads
    variables: tuple[str, ...]  # repository variables it reads


def secret(name: str) -> str:
    if not _SECRET_NAME.fullmatch(name) or name.upper().startswith("GITHUB_"):
        raise UsageError(f"{name!r} cannot be a GitHub secret name (letters, digits and '_', not starting "
                         "with a digit or GITHUB_)", "rename it in service.secrets")
    return "${{ secrets." + name + " }}"


def app_secret_names(config: Config) -> tuple[str, ...]:
    """The repository secrets of the application's secrets (`service.secrets`), in order."""
    names = tuple(getattr(config.service, "secrets", ()) or ())
    return tuple(f"{SECRET_PREFIX}{n}" for n in names)


def _git(cwd: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10)
    except (FileNotFoundError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else None


def default_branch(cwd: Path) -> tuple[str, str]:
    """The repository's default branch and how it was found: origin's HEAD, else the branch
    checked out, else main."""
    origin = _git(cwd, "symbolic-ref", "--short", "refs/remotes/origin/HEAD")
    if origin and "/" in origin:
        return origin.split("/", 1)[1], "origin's default branch"
    head = _git(cwd, "symbolic-ref", "--short", "HEAD")
    if head:
        return head, "the branch checked out (no origin/HEAD to ask)"
    return "main", "a guess (no branch found; pass --branch)"


def workflow(config: Config, *, branch: str, config_arg: str | None, working_directory: str | None,
             install: str) -> dict[str, Any]:
    """The workflow as data. config_arg: --config for the commands (None: zdd.yaml where they run);
    working_directory: where they run, relative to the repository's root (None: the root)."""
    cfg = f" --config {shlex.quote(config_arg)}" if config_arg else ""
    token = {TOKEN_SECRET: secret(TOKEN_SECRET)}
    deploy_env = {**token, SSH_KEY_SECRET: secret(SSH_KEY_SECRET)}
    deploy_env.update({name: secret(name) for name in app_secret_names(config)})
    job: dict[str, Any] = {
        "runs-on": "ubuntu-latest",
        "timeout-minutes": 60,
    }
    if working_directory:
        job["defaults"] = {"run": {"working-directory": working_directory}}
    job["steps"] = [
        {"uses": "actions/checkout@v4"},
        {"uses": "actions/setup-python@v5", "with": {"python-version": PYTHON}},
        {"name": "Install zdd-tui", "run": f"python -m pip install {shlex.quote(install)}"},
        {"name": "Pin the hosts' SSH keys", "run": _PIN_HOSTS,
         "env": {"KNOWN_HOSTS": "${{ vars." + KNOWN_HOSTS_VARIABLE + " }}"}},
        {"name": "Build and push the image", "run": f"zdd-tui build --push --json{cfg}", "env": token},
        {"name": "Deploy", "run": f"zdd-tui deploy --yes --json{cfg}", "env": deploy_env},
    ]
    return {
        "name": f"zdd-tui deploy ({config.app})",
        "on": {"push": {"branches": [branch]}, "workflow_dispatch": None},
        # One deploy at a time, and a queued one waits rather than cancelling the one running:
        # a cancelled deploy would stop between hosts.
        "concurrency": {"group": f"zdd-deploy-{config.app}", "cancel-in-progress": False},
        "permissions": {"contents": "read"},
        "jobs": {"deploy": job},
    }


HEADER = """\
# Written by `zdd-tui ci github`: build, push and deploy on every push to {branch}, or by hand
# (Actions > {name} > Run workflow).
# Repository secrets it reads: {secrets}.
# Repository variable: {variable} (the hosts' pinned SSH keys, known_hosts lines; not secret).
"""


class _Dumper(yaml.SafeDumper):
    """safe_dump's dumper, writing a text of several lines (a script) as a `|` block."""


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _text)


def github_workflow(config: Config, *, branch: str | None = None, install: str | None = None) -> Workflow:
    """The workflow for this project's repository (the git checkout around zdd.yaml)."""
    if config.path is None:
        raise UsageError("the project has no zdd.yaml to write a workflow for", "run 'zdd-tui init' first")
    project = config.path.resolve().parent
    top = _git(project, "rev-parse", "--show-toplevel")
    if top is None:
        raise UsageError(f"{project} is not in a git repository: a GitHub workflow lives in one",
                         "run 'git init' (and push it to GitHub) first")
    root = Path(top).resolve()
    rel = project.relative_to(root)
    found = (branch, "--branch") if branch else default_branch(project)
    if not _BRANCH.fullmatch(found[0]):
        raise UsageError(f"{found[0]!r} is not a branch name this workflow can name (letters, digits, '.', '_', "
                         "'-', '/')", "pass --branch NAME")
    config_arg = None if config.path.name == "zdd.yaml" else config.path.name
    data = workflow(config, branch=found[0], config_arg=config_arg,
                    working_directory=None if str(rel) == "." else rel.as_posix(),
                    install=install or f"zdd-tui=={__version__}")
    secrets = (TOKEN_SECRET, SSH_KEY_SECRET, *app_secret_names(config))
    text = HEADER.format(branch=found[0], name=data["name"], secrets=", ".join(secrets),
                         variable=KNOWN_HOSTS_VARIABLE)
    text += yaml.dump(data, Dumper=_Dumper, sort_keys=False, width=100, allow_unicode=False)
    return Workflow(path=root / WORKFLOW_PATH, text=text, branch=found[0], branch_source=found[1],
                    secrets=secrets, variables=(KNOWN_HOSTS_VARIABLE,))


def known_hosts_file() -> Path:
    """Where this machine pinned the hosts' SSH keys (what ZDD_KNOWN_HOSTS should hold)."""
    from zdd_tui.hosts.known_hosts import default_known_hosts_path

    return default_known_hosts_path()
