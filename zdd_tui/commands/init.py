"""`zdd-tui init [--config PATH] [--force]`: write a commented zdd.yaml for the current project.

Every key appears with its default and a one-line comment; names derive from the directory.
The text is generated from the schema (so a new key cannot be forgotten: the tests check every
schema path has a comment) and is checked to load before it is written.
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys
from pathlib import Path

import yaml

from zdd_tui.config import (
    Config,
    ConfigError,
    DropletsConfig,
    LoadBalancerConfig,
    RegistryConfig,
    parse_config,
)
from zdd_tui.errors import RefusedError, UsageError

SECTION_COMMENTS = {
    "digitalocean": "DigitalOcean account and region",
    "droplets": "the hosts that run the service (found by tag)",
    "load_balancer": "the DigitalOcean load balancer in front of the droplets",
    "load_balancer.health_check": "how the load balancer decides a droplet is healthy (DigitalOcean's ranges)",
    "registry": "the container registry the hosts pull from",
    "service": "the container on each droplet",
    "build": "`zdd-tui build`: docker build of the image",
    "deploy": "the rolling deploy",
    "ssh": "how zdd-tui reaches the droplets",
    "sandbox": "the local sandbox (written by `zdd-tui sandbox up`)",
}

COMMENTS = {
    "app": "application name: container name and state directory on the hosts",
    "context": "credentials context in the OS keyring (`zdd-tui login --context NAME`)",
    "runtime": "ssh (Docker over SSH on droplets) | sandbox (the local sandbox's hosts)",
    "digitalocean.api_url": "the DigitalOcean API (the sandbox writes its own local URL)",
    "digitalocean.region": "region slug for new droplets and the load balancer",
    "droplets.tag": "tag that marks this app's droplets (the load balancer targets it)",
    "droplets.names": "droplet names (hostnames), in rollout order",
    "droplets.size": "size slug for new droplets",
    "droplets.image": "image slug for new droplets",
    "load_balancer.name": "load balancer name",
    "load_balancer.size_unit": "load balancer size units (1-100)",
    "load_balancer.entry_port": "public port clients connect to (HTTP)",
    "load_balancer.target_port": "null = service.port (host networking: it must be service.port)",
    "load_balancer.health_check.protocol": "http | https",
    "load_balancer.health_check.path": "path the load balancer checks; 200-399 is healthy",
    "load_balancer.health_check.port": "null = service.port",
    "load_balancer.health_check.check_interval_seconds": "seconds between checks (3-300)",
    "load_balancer.health_check.response_timeout_seconds": "seconds to wait for an answer (3-300)",
    "load_balancer.health_check.unhealthy_threshold": "failed checks before a droplet is taken out (2-10)",
    "load_balancer.health_check.healthy_threshold": "passed checks before a droplet gets traffic again (2-10)",
    "registry.name": "DigitalOcean container registry name",
    "registry.repository": "repository in the registry (tags: latest, sha-<gitsha>)",
    "registry.server": "registry host",
    "registry.tier": "starter | basic | professional",
    "registry.region": "null = DigitalOcean's default region for registries",
    "service.port": "port the service listens on, on each droplet (host networking)",
    "service.admin_port": "admin endpoints (drain, stats), bound to the host's 127.0.0.1 only",
    "service.container_name": "null = the app name",
    "service.env": "environment for the container; never secrets (NAME: value)",
    "build.dockerfile": "Dockerfile path, relative to the context",
    "build.context": "build context directory",
    "build.args": "docker build arguments (NAME: value)",
    "deploy.strategy": "lb-drain: drain each host out of the load balancer, replace, bring back",
    "deploy.batch_size": "hosts replaced at a time (always fewer than the droplets)",
    "deploy.pull_timeout_seconds": "limit for pulling the new image on a host",
    "deploy.start_timeout_seconds": "limit for the new container to report healthy",
    "deploy.stop_grace_seconds": "SIGTERM to SIGKILL: time for in-flight requests to finish",
    "deploy.margin_seconds": "added to the waits derived from the health check settings",
    "ssh.user": "SSH user on the droplets",
    "ssh.port": "SSH port",
    "ssh.state_dir": "deploy lock and journal on each host",
    "ssh.connect_timeout_seconds": "SSH connection timeout",
    "sandbox.state_dir": "the sandbox's state directory",
}

HEADER = """\
# zdd.yaml: zdd-tui's project file (reference: README.md, "Configuration").
# Every setting is shown with its default; delete the ones you do not change if you like.
# No secrets here: the DigitalOcean token and the SSH key live in the OS keyring
# (`zdd-tui login`), or in DIGITALOCEAN_TOKEN / ZDD_SSH_PRIVATE_KEY in CI.
"""


def app_name(directory: Path) -> str:
    """A valid app name from a directory name: lowercase, other characters become '-'.

    Hostname rules (droplet names are "<app>-N"), so no '_' or '.', and at most 50 characters.
    """
    name = re.sub(r"[^a-z0-9-]+", "-", directory.name.lower()).strip("-")[:50].strip("-")
    return name or "app"


def project_config(directory: Path) -> Config:
    """Defaults, with names taken from the project directory."""
    app = app_name(directory)
    return Config(
        app=app,
        droplets=DropletsConfig(tag=app, names=(f"{app}-1", f"{app}-2")),
        load_balancer=LoadBalancerConfig(name=f"{app}-lb"),
        registry=RegistryConfig(repository=app),
    )


def _scalar(value) -> str:
    if isinstance(value, (tuple, list)) and not value:
        return "[]"
    if isinstance(value, dict) and not value:
        return "{}"
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(_scalar(v) for v in value) + "]"
    return yaml.safe_dump(value, default_flow_style=True, width=1000).removesuffix("\n...\n").strip()


def render(config: Config) -> str:
    """The commented YAML text of a config (every key, in schema order)."""
    lines = [HEADER]

    def walk(obj, prefix: str, indent: int) -> None:
        for f in dataclasses.fields(obj):
            if obj is config and (f.name == "path" or (f.name == "sandbox" and config.sandbox is None)):
                continue
            value = getattr(obj, f.name)
            path = f"{prefix}{f.name}"
            pad = "  " * indent
            if dataclasses.is_dataclass(value):
                if indent == 0:
                    lines.append("")
                lines.append(f"{pad}{f.name}:  # {SECTION_COMMENTS[path]}")
                walk(value, path + ".", indent + 1)
            elif isinstance(value, dict) and value:
                lines.append(f"{pad}{f.name}:  # {COMMENTS[path]}")
                for k, v in value.items():
                    lines.append(f"{pad}  {k}: {_scalar(v)}")
            else:
                lines.append(f"{pad}{f.name}: {_scalar(value)}  # {COMMENTS[path]}")

    walk(config, "", 0)
    return "\n".join(lines) + "\n"


def register(sub, common):
    p = sub.add_parser(
        "init",
        parents=[common],
        help="write a commented zdd.yaml for the current project",
        description="Write a commented zdd.yaml (every setting with its default) for the current directory.",
    )
    p.add_argument("--force", action="store_true", help="overwrite an existing file")
    p.set_defaults(func=run)


def run(args) -> int:
    path = Path(args.config)
    if path.is_dir():
        raise UsageError(f"{path} is a directory", "pass --config DIR/zdd.yaml")
    if path.exists() and not args.force:
        raise RefusedError(f"{path} already exists; nothing was written", "pass --force to overwrite it")
    text = render(project_config(Path(os.getcwd())))
    try:
        parse_config(text, str(path))  # never write a file the loader would reject
    except ConfigError as exc:  # a bug in the template, not the operator's doing
        raise UsageError(f"internal error: the generated config does not load: {exc}") from None
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)  # atomic: a crash never leaves half a file
    print(f"wrote {path}: edit droplets, load_balancer and registry, then run `zdd-tui login`", file=sys.stderr)
    return 0
