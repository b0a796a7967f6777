"""The proxy on a droplet (local-swap): where its files live, what they say, what it is called.

Layout on the host, in `<ssh.state_dir>/<app>/proxy/` (mode 0700, owned by the SSH user, root
by default):

- `traefik.yml`: the static configuration (entry points, the file provider, ping, metrics);
- `dynamic/app.yml`: the active slot, replaced by rename (a temp file in the same directory),
  never edited in place.

The container `<app>-proxy` (the configured `proxy.image`, host networking, `restart always`)
sees that directory bind-mounted read-only as a directory at PROXY_MOUNT, so Traefik's watcher
sees each rename, and the configuration survives a reboot of the droplet: dockerd starts the
proxy again and it reads the active slot from the file.

What the proxy listens on, with host networking:
- `0.0.0.0:<service.port>` (entry point `web`), the port the DO load balancer targets: the app's
  traffic, sent to the active slot on the host's 127.0.0.1;
- `127.0.0.1:<proxy.port>` (entry point `zdd`): /ping, /metrics and Traefik's API, which only
  reads (`api@internal`, GET); no dashboard, no other router.

What another local user of the droplet can and cannot do:
- can read, from 127.0.0.1:<proxy.port>, the proxy's ping, its metrics (request counts and
  latencies per slot) and its routers and services (which slot is active, the slot ports);
- can connect to the slots' ports on 127.0.0.1 directly, as to any port the app listens on;
- cannot change the upstream, the entry points or anything else: the only control surface is the
  dynamic file, in a directory only its owner can read or write, and the API has no write
  operation; the Docker socket (root's) is not mounted into the proxy.
zdd-tui itself reaches the `zdd` entry point only through SSH channels to the host's loopback.
"""

from __future__ import annotations

from dataclasses import dataclass

from zdd_tui.config import Config
from zdd_tui.proxy import traefik

PROXY_MOUNT = "/etc/zdd-proxy"  # where the container sees the configuration directory
STATIC_FILE = "traefik.yml"
DYNAMIC_DIR = "dynamic"
UPSTREAM_HOST = "127.0.0.1"  # the slots, as the proxy reaches them (host networking)
WEB_LISTEN = "0.0.0.0"  # the LB's target; the droplet's firewall decides who reaches it
ZDD_LISTEN = "127.0.0.1"


@dataclass(frozen=True)
class ProxyLayout:
    dir: str  # on the host

    @property
    def dynamic_dir(self) -> str:
        return f"{self.dir}/{DYNAMIC_DIR}"

    @property
    def static_path(self) -> str:
        return f"{self.dir}/{STATIC_FILE}"

    @property
    def dynamic_path(self) -> str:
        return f"{self.dynamic_dir}/{traefik.DYNAMIC_FILE}"


def layout(config: Config) -> ProxyLayout:
    return ProxyLayout(f"{config.ssh.state_dir.rstrip('/')}/{config.app}/proxy")


def container_name(config: Config) -> str:
    return f"{config.app}-proxy"


def slot_ports(config: Config) -> dict[str, int]:
    return {"a": config.proxy.slot_a_port, "b": config.proxy.slot_b_port}


def static_text(config: Config) -> str:
    return traefik.static_config(
        listen=WEB_LISTEN, port=config.service.port, admin_listen=ZDD_LISTEN, admin_port=config.proxy.port,
        dynamic_dir=f"{PROXY_MOUNT}/{DYNAMIC_DIR}", grace_seconds=float(config.deploy.stop_grace_seconds))


def dynamic_text(config: Config, slot: str | None) -> str:
    return traefik.dynamic_config(slot=slot, slot_ports=slot_ports(config), upstream_host=UPSTREAM_HOST)


def config_file() -> str:
    """The static file as the container sees it (its `--configFile`)."""
    return f"{PROXY_MOUNT}/{STATIC_FILE}"
