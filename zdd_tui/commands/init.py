"""`zdd-tui init [--config PATH] [--force]`: write a commented zdd.yaml for the current project.

Every key appears with its default and a one-line comment; names derive from the directory.
Beside it, `.zdd/hooks/` gets commented sample hooks (`<name>.sample`, which never run).
The text is generated from the schema in zdd_tui/config.py (each key's default, explanation and
allowed values are declared there once; README's configuration reference is this same text), and
is checked to load before it is written.
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
    Key,
    LoadBalancerConfig,
    RegistryConfig,
    keys_of,
    parse_config,
)
from zdd_tui.errors import RefusedError, UsageError
from zdd_tui.project.hooks import write_samples

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


def comment(rule: Key) -> str:
    """The one-line comment beside a key: its explanation, its choices, and a range set by
    DigitalOcean (ports and plain minimums go without saying)."""
    choices = " | ".join(f"{name} ({meaning})" if meaning else name for name, meaning in rule.choices)
    text = ": ".join(part for part in (rule.help, choices) if part)
    b = rule.bounds
    if b is not None and b.why and b.hi is not None:
        text += f" ({b.lo}-{b.hi})"
    return text


def render(config: Config) -> str:
    """The commented YAML text of a config (every key, in schema order; `sandbox` only when set)."""
    lines = [HEADER]

    def walk(obj, indent: int) -> None:
        for name, rule in keys_of(type(obj)):
            value = getattr(obj, name)
            if value is None and name == "sandbox" and obj is config:
                continue
            pad = "  " * indent
            if dataclasses.is_dataclass(value):
                if indent == 0:
                    lines.append("")
                lines.append(f"{pad}{name}:  # {comment(rule)}")
                walk(value, indent + 1)
            elif isinstance(value, dict) and value:
                lines.append(f"{pad}{name}:  # {comment(rule)}")
                for k, v in value.items():
                    lines.append(f"{pad}  {k}: {_scalar(v)}")
            else:
                lines.append(f"{pad}{name}: {_scalar(value)}  # {comment(rule)}")

    walk(config, 0)
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
    samples = write_samples(path.resolve().parent, force=args.force)
    if samples:
        print(f"wrote sample hooks in {samples[0].parent}: {', '.join(p.name for p in samples)} "
              "(rename one without .sample to use it)", file=sys.stderr)
    return 0
