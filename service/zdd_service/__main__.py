"""`python -m zdd_service`: run the sample service until SIGTERM/SIGINT."""

from __future__ import annotations

import sys

from .settings import SettingsError, load_settings

USAGE = """usage: python -m zdd_service [migrate]

The zdd-tui sample service. Configured only by environment variables:
  ZDD_HOST (0.0.0.0)  ZDD_PORT, else PORT (8080)
  ZDD_ADMIN_PORT (unset or 0: no admin listener)  ZDD_ADMIN_HOST (127.0.0.1)  ZDD_NO_ADMIN=1
  ZDD_VERSION (dev)  ZDD_GRACE_SECONDS (30)
  ZDD_FAIL_HEALTH=1  ZDD_CRASH_ON_START=1  ZDD_START_DELAY_SECONDS=N  ZDD_LATENCY_MS=N
  ZDD_ERROR_RATE=0..1 (share of GET / answered 500)
`migrate` records ZDD_VERSION (the release command's stand-in; see migrate.py).
See service/README.md."""


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args == ["migrate"]:
        from .migrate import migrate

        return migrate()
    if args:
        if args in (["-h"], ["--help"]):
            print(USAGE)
            return 0
        print(f"zdd-service: error: unexpected arguments {args!r}\n{USAGE}", file=sys.stderr)
        return 2
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"zdd-service: error: {exc}", file=sys.stderr, flush=True)
        return 2
    # Imported only now: bad settings are refused without paying for importing aiohttp.
    import asyncio

    from .server import serve

    return asyncio.run(serve(settings))


if __name__ == "__main__":
    sys.exit(main())
