"""Typed views of the DigitalOcean objects zdd-tui uses.

The adapter (`zdd_tui.cloud.client`) turns DigitalOcean's JSON into these; everything above the adapter
(engine, setup, console) sees only these types.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True)
class Droplet:
    id: int
    name: str
    status: str  # new | active | off | archive
    region: str
    size: str
    public_ipv4: str | None
    private_ipv4: str | None
    tags: tuple[str, ...] = ()
    created_at: datetime | None = None
    # The create action DigitalOcean named for it (`links.actions`), when this client created it.
    create_action_id: int | None = field(default=None, compare=False)


@dataclass(frozen=True)
class HealthCheck:
    protocol: str
    port: int
    path: str
    check_interval_seconds: int
    response_timeout_seconds: int
    unhealthy_threshold: int
    healthy_threshold: int


@dataclass(frozen=True)
class ForwardingRule:
    entry_protocol: str
    entry_port: int
    target_protocol: str
    target_port: int


@dataclass(frozen=True)
class LoadBalancer:
    id: str
    name: str
    ip: str | None
    status: str  # new | active | errored
    region: str
    tag: str | None
    droplet_ids: tuple[int, ...]
    forwarding_rules: tuple[ForwardingRule, ...]
    health_check: HealthCheck
    size_unit: int = 1
    # The object as DigitalOcean returned it: a PUT replaces the whole load balancer, so an update
    # starts from this and changes only what zdd-tui owns (a user's HTTPS rule, firewall or
    # sticky sessions stay as they are).
    raw: dict = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True)
class Registry:
    name: str
    region: str | None
    created_at: datetime | None
    tier: str | None = None


@dataclass(frozen=True)
class Size:
    """A droplet size as GET /v2/sizes lists it: its price and where it can be created."""

    slug: str
    price_monthly: float
    regions: tuple[str, ...] = ()
    available: bool = True


@dataclass(frozen=True)
class RegistryTag:
    repository: str
    tag: str
    manifest_digest: str
    compressed_size_bytes: int
    updated_at: datetime | None


# How long a host's pull credentials live: long enough for a slow pull, short enough to be useless
# later.
PULL_CREDENTIALS_SECONDS = 900


@dataclass(frozen=True)
class DockerCredentials:
    """A docker config.json `auths` mapping; short-lived. Never log or display it."""

    auths: dict = field(repr=False)
    expires_in_seconds: int = 0
    read_write: bool = False


@dataclass(frozen=True)
class SSHKey:
    id: int
    name: str
    fingerprint: str
    public_key: str


@dataclass(frozen=True)
class Account:
    email: str
    uuid: str
    status: str
    droplet_limit: int


@dataclass(frozen=True)
class RateLimit:
    """From the `ratelimit-*` headers of the last response (`reset_epoch`: when the oldest
    request of the hour stops counting)."""

    limit: int
    remaining: int
    reset_epoch: int


@dataclass(frozen=True)
class Action:
    id: int
    status: str  # in-progress | completed | errored
    type: str


@dataclass(frozen=True)
class Repository:
    """A registry repository (GET /v2/registries/{name}/repositoriesV2)."""

    name: str
    tag_count: int
    manifest_count: int
    latest_digest: str | None = None
    latest_tags: tuple[str, ...] = ()
    updated_at: datetime | None = None


@dataclass(frozen=True)
class RegistryTier:
    """A container registry subscription tier with its price (GET /v2/registries/options)."""

    slug: str
    name: str
    monthly_price_usd: float
    included_repositories: int = 0
    included_storage_bytes: int = 0
    eligible: bool = True
