"""`zdd-tui build [--push] [--allow-dirty] [--build-arg K=V] [--json]`: build the service image
through the Docker Engine API, tag it `latest` and `sha-<HEAD>`, and push it with short-lived
read-write registry credentials."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from zdd_tui.images.build import BuildFinished, BuildOutput, BuildStarted, LayerProgress, PushFinished
from zdd_tui.project.build import image_builder, parse_build_args, push_credentials_for


def register(sub, common):
    p = sub.add_parser("build", parents=[common], help="build (and push) the service image")
    p.add_argument("--push", action="store_true", help="push both tags to the registry")
    p.add_argument("--allow-dirty", action="store_true", help="build from uncommitted changes (tag sha-<sha>-dirty)")
    p.add_argument("--build-arg", action="append", default=[], metavar="K=V", help="a build argument (repeatable)")
    p.add_argument("--docker-host", default=None, metavar="URL", help="Docker engine (default: DOCKER_HOST or the local socket)")
    p.add_argument("--project-dir", default=None, metavar="DIR", help="where the git repository and build paths are (default: the config's directory)")
    p.add_argument("--no-registry-auth", action="store_true", help="push without credentials (a lab registry without auth)")
    p.add_argument("--json", action="store_true", help="print events as JSON lines")
    p.set_defaults(func=run)


class _Render:
    """Text output: build lines, and one line per layer status change (not every byte)."""

    def __init__(self, as_json: bool):
        self.as_json = as_json
        self._last: dict[tuple[str, str], str] = {}
        self._quarter: dict[tuple[str, str], int] = {}

    def __call__(self, ev) -> None:
        if isinstance(ev, LayerProgress):
            key = (ev.tag, ev.layer)
            if self._last.get(key) == ev.status:
                # Same status again: only more bytes. Show whole quarters, to keep logs short.
                if not (ev.current is not None and ev.total):
                    return
                q = int(4 * ev.current / ev.total)
                if q == self._quarter.get(key):
                    return
                self._quarter[key] = q
            self._last[key] = ev.status
        if self.as_json:
            print(json.dumps({k: v for k, v in ev.__dict__.items()}), flush=True)
            return
        if isinstance(ev, BuildStarted):
            print(f"building {', '.join(ev.tags)} from {ev.context} ({ev.dockerfile})", flush=True)
        elif isinstance(ev, BuildOutput):
            print(f"  {ev.line}", flush=True)
        elif isinstance(ev, BuildFinished):
            print(f"built {ev.image_id}", flush=True)
        elif isinstance(ev, LayerProgress):
            size = f" {ev.current}/{ev.total} bytes" if ev.current is not None and ev.total else ""
            print(f"  {ev.tag} layer {ev.layer}: {ev.status}{size}", flush=True)
        elif isinstance(ev, PushFinished):
            print(f"pushed {ev.ref} {ev.digest}", flush=True)


async def run(args) -> int:
    from zdd_tui.config import load_config

    config = load_config(Path(args.config))
    build_args = parse_build_args(args.build_arg)
    render = _Render(args.json)
    builder = image_builder(config, project_dir=args.project_dir, docker_host=args.docker_host)
    try:
        builder.plan(allow_dirty=args.allow_dirty)  # refuse a dirty tree before touching the engine
        result = await builder.build(allow_dirty=args.allow_dirty, build_args=build_args, on_event=render)
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
