"""The project file, zdd.yaml: schema, defaults and loading.

The schema is a tree of frozen dataclasses; every field has a default where one makes sense.
`load_config(path)` parses and validates the file and raises `ConfigError` naming the file,
line, key path, what was expected and what was found.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from zdd_tui.errors import UsageError

DEFAULT_CONFIG_PATH = Path("zdd.yaml")
DEFAULT_API_URL = "https://api.digitalocean.com"


class ConfigError(UsageError):
    """zdd.yaml is malformed or invalid. Message names file, line, key path, expected, found."""


@dataclass(frozen=True)
class DigitalOceanConfig:
    api_url: str = DEFAULT_API_URL
    region: str = "nyc3"


@dataclass(frozen=True)
class DropletsConfig:
    tag: str = "zdd-app"
    names: tuple[str, ...] = ("app-1", "app-2")
    size: str = "s-1vcpu-1gb"
    image: str = "debian-12-x64"


@dataclass(frozen=True)
class HealthCheckConfig:
    # DigitalOcean's ranges: interval 3-300, timeout 3-300, thresholds 2-10.
    protocol: str = "http"
    path: str = "/health"
    port: int | None = None  # None: the service port
    check_interval_seconds: int = 10
    response_timeout_seconds: int = 5
    unhealthy_threshold: int = 3
    healthy_threshold: int = 5


@dataclass(frozen=True)
class LoadBalancerConfig:
    name: str = "zdd-app-lb"
    size_unit: int = 1
    entry_port: int = 80
    target_port: int | None = None  # None: the service port (containers use host networking)
    health_check: HealthCheckConfig = field(default_factory=HealthCheckConfig)


@dataclass(frozen=True)
class RegistryConfig:
    name: str = "zdd-registry"
    repository: str = "app"
    server: str = "registry.digitalocean.com"  # a lab points this at its own registry
    tier: str = "starter"  # starter | basic | professional
    region: str | None = None  # None: DigitalOcean's default for registries


@dataclass(frozen=True)
class ServiceConfig:
    port: int = 8080  # the port the service listens on (host networking)
    admin_port: int = 9090  # admin endpoints, bound to the host's 127.0.0.1 only
    container_name: str | None = None  # None: the app name
    env: dict[str, str] = field(default_factory=dict)  # non-secret environment for the container


@dataclass(frozen=True)
class BuildConfig:
    dockerfile: str = "Dockerfile"
    context: str = "."
    args: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class DeployConfig:
    strategy: str = "lb-drain"
    batch_size: int = 1
    pull_timeout_seconds: int = 300
    start_timeout_seconds: int = 60  # the new container's own health
    stop_grace_seconds: int = 30  # SIGTERM -> SIGKILL
    margin_seconds: int = 5  # added to the bounds derived from the LB's settings


@dataclass(frozen=True)
class SSHConfig:
    user: str = "root"
    port: int = 22
    state_dir: str = "/var/lib/zdd"  # lock and journal on each host
    connect_timeout_seconds: int = 10


@dataclass(frozen=True)
class SandboxConfig:
    """Present only in a zdd.yaml written by `zdd-tui sandbox up`."""

    state_dir: str = ""


@dataclass(frozen=True)
class Config:
    app: str = "app"
    context: str = "default"  # credentials context (like doctl's)
    runtime: str = "ssh"  # ssh: Docker over SSH on droplets; sandbox: the local sandbox's hosts
    digitalocean: DigitalOceanConfig = field(default_factory=DigitalOceanConfig)
    droplets: DropletsConfig = field(default_factory=DropletsConfig)
    load_balancer: LoadBalancerConfig = field(default_factory=LoadBalancerConfig)
    registry: RegistryConfig = field(default_factory=RegistryConfig)
    service: ServiceConfig = field(default_factory=ServiceConfig)
    build: BuildConfig = field(default_factory=BuildConfig)
    deploy: DeployConfig = field(default_factory=DeployConfig)
    ssh: SSHConfig = field(default_factory=SSHConfig)
    sandbox: SandboxConfig | None = None
    path: Path | None = field(default=None, compare=False)  # where it was loaded from

    # Derived values every layer uses; kept here so nobody recomputes them differently.
    @property
    def target_port(self) -> int:
        return self.load_balancer.target_port or self.service.port

    @property
    def health_port(self) -> int:
        return self.load_balancer.health_check.port or self.service.port

    @property
    def container_name(self) -> str:
        return self.service.container_name or self.app

    @property
    def image_repo(self) -> str:
        """`registry.digitalocean.com/<registry>/<repository>` (the sandbox uses its own host)."""
        return f"{self.registry.server}/{self.registry.name}/{self.registry.repository}"

    @property
    def is_sandbox(self) -> bool:
        return self.runtime == "sandbox"
