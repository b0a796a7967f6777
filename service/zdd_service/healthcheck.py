"""Container health probe (the image's HEALTHCHECK): exit 0 if /health answers 200, else 1.

It marks itself with X-Zdd-Probe so the service does not count it as a load-balancer check.
Standard library only, so it runs without importing aiohttp.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping


def probe_url(env: Mapping[str, str] = os.environ) -> str:
    host = env.get("ZDD_HOST", "").strip()
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    port = env.get("ZDD_PORT", "").strip() or env.get("PORT", "").strip() or "8080"
    return f"http://{host}:{port}/health"


def main() -> int:
    req = urllib.request.Request(probe_url(), headers={"X-Zdd-Probe": "docker"})
    # No proxies: an http_proxy in the container's environment must not intercept a local probe.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=2) as resp:
            status, body = resp.status, resp.read(200)
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read(200)
    except (OSError, ValueError) as exc:
        print(f"unhealthy: {exc}")
        return 1
    print(status, body.decode(errors="replace"))
    return 0 if status == 200 else 1


if __name__ == "__main__":
    sys.exit(main())
