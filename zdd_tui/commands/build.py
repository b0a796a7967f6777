"""`zdd-tui build [--push] [--allow-dirty] [--build-arg K=V] [--json]`: build the service image
through the Docker Engine API, tag it `latest` and `sha-<HEAD>`, and push it with short-lived
read-write registry credentials."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from zdd_tui.headless import HeadlessRenderer
from zdd_tui.project.build import build_image, image_builder, parse_build_args, push_credentials_for


def register(sub, common):
    p = sub.add_parser("build", parents=[common], help="build (and push) the service image")
    p.add_argument("--push", action="store_true", help="push both tags to the registry")
    p.add_argument("--allow-dirty", action="store_true", help="build from uncommitted changes (tag sha-<sha>-dirty)")
    p.add_argument("--build-arg", action="append", default=[], metavar="K=V", help="a build argument (repeatable)")
    p.add_argument("--docker-host", default=None, metavar="URL",
                   help="Docker engine (default: DOCKER_HOST or the local socket)")
    p.add_argument("--project-dir", default=None, metavar="DIR",
                   help="where the git repository and build paths are (default: the config's directory)")
    p.add_argument("--no-registry-auth", action="store_true",
                   help="push without credentials (a lab registry without auth)")
    p.add_argument("--json", action="store_true", help="print events as JSON lines")
    p.set_defaults(func=run)


async def run(args) -> int:
    from zdd_tui.config import load_config

    config = load_config(Path(args.config))
    build_args = parse_build_args(args.build_arg)
    render = HeadlessRenderer(sys.stdout, json_lines=args.json)
    builder = image_builder(config, project_dir=args.project_dir, docker_host=args.docker_host)
    try:
        # A dirty tree is refused, then the pre-build hook runs, before the engine is touched.
        result = await build_image(config, builder, allow_dirty=args.allow_dirty, build_args=build_args,
                                   on_event=render)
        pushed = None
        if args.push:
            creds = None
            if not args.no_registry_auth:
                creds = await push_credentials_for(config, args.context)
            pushed = await builder.push(result, creds, on_event=render)
    finally:
        builder.close()
    summary = {
        "kind": "result",
        "image_id": result.image_id,
        "refs": result.refs,
        "sha": result.git.sha,
        "dirty": result.git.dirty,
        "pushed": bool(pushed),
        "digests": pushed.digests if pushed else {},
    }
    if args.json:
        print(json.dumps(summary))
    else:
        print(("pushed " if pushed else "tagged ") + ", ".join(result.refs), file=sys.stdout)
    return 0
