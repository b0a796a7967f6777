"""`python -m zdd_service migrate`: the sample service's release command.

It has no database; it records the version it "migrated to" (ZDD_VERSION) so a test can see
that the release command ran, once, with the new image's environment: one line
`<version> <epoch seconds>` appended to the file ZDD_MIGRATIONS_FILE names (when set), and the
same on stdout. Exit 0; exit 2 when the file cannot be written.
"""

from __future__ import annotations

import os
import sys
import time


def migrate(env: dict[str, str] | None = None) -> int:
    env = dict(os.environ if env is None else env)
    version = env.get("ZDD_VERSION") or "dev"
    print(f"migrating to version {version}", flush=True)
    path = env.get("ZDD_MIGRATIONS_FILE")
    if path:
        try:
            with open(path, "a") as f:
                f.write(f"{version} {time.time():.3f}\n")
        except OSError as exc:
            print(f"zdd-service: error: cannot record the migration in {path}: {exc.strerror}", file=sys.stderr)
            return 2
    print(f"migrated to version {version}", flush=True)
    return 0
