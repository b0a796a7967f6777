"""`zdd-tui ci github [--force] [--branch B] [--install SPEC]`: write the GitHub Actions workflow
`.github/workflows/zdd-deploy.yml` that builds, pushes and deploys on every push to the default
branch and by hand, and say which repository secrets and variable to create."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from zdd_tui.errors import RefusedError


def register(sub, common):
    p = sub.add_parser("ci", help="write a CI workflow that builds and deploys (ci github)",
                       description="Write a CI workflow for this project.")
    kinds = p.add_subparsers(dest="kind", metavar="KIND", required=True)
    g = kinds.add_parser("github", parents=[common], help="GitHub Actions: .github/workflows/zdd-deploy.yml",
                         description="Write .github/workflows/zdd-deploy.yml at the root of the git repository: "
                                     "on a push to the default branch and by hand, build and push the image, "
                                     "then deploy it (one run at a time).")
    g.add_argument("--force", action="store_true", help="overwrite an existing workflow file")
    g.add_argument("--branch", default=None,
                   help="the branch whose pushes deploy (default: the repository's default branch)")
    g.add_argument("--install", default=None, metavar="SPEC",
                   help="what the job pip-installs (default: zdd-tui==<this version>; e.g. a git URL)")
    g.set_defaults(func=run)


def run(args) -> int:
    from zdd_tui.config import load_config
    from zdd_tui.project.ci import github_workflow, known_hosts_file

    config = load_config(Path(args.config))
    wf = github_workflow(config, branch=args.branch, install=args.install)
    if wf.path.exists() and not args.force:
        raise RefusedError(f"{wf.path} already exists; nothing was written", "pass --force to overwrite it")
    wf.path.parent.mkdir(parents=True, exist_ok=True)
    tmp = wf.path.with_name(f".{wf.path.name}.tmp")
    tmp.write_text(wf.text)
    os.replace(tmp, wf.path)  # atomic: never half a workflow
    print(f"wrote {wf.path} (deploys pushes to '{wf.branch}': {wf.branch_source})")
    print("create these repository secrets (Settings > Secrets and variables > Actions, or 'gh secret set NAME'):")
    for name in wf.secrets:
        print(f"  {name}")
    for name in wf.variables:
        print(f"and the repository variable {name}: the lines of {known_hosts_file()} for the fleet's hosts "
              f"('gh variable set {name} < FILE')")
    sys.stdout.flush()
    return 0
