"""DigitalOcean behaviours the sandbox API imitates, each switchable in code (never over the network).

    api = SandboxAPI(...)
    api.imitate.missing_scopes = {"monitoring:read"}     # a token created without that scope
    api.imitate.failing_creates = 1                       # the next droplet create's action errors

The rate limits are on by default at DigitalOcean's numbers (SandboxAPI's constructor sets the
5,000/hour and 250/minute ones; `keys_per_minute` is the special limit on listing SSH keys).
The rest are off by default, so a sandbox behaves like a healthy account until a test says
otherwise.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field

# The scopes DigitalOcean's OpenAPI spec lists for each operation the sandbox serves
# (`security: bearer_auth: [...]`); a token lacking any of them gets 403.
SCOPES: dict[tuple[str, str], tuple[str, ...]] = {
    ("GET", "/v2/account"): ("account:read",),
    ("GET", "/v2/account/keys"): ("ssh_key:read",),
    ("POST", "/v2/account/keys"): ("ssh_key:create",),
    ("GET", "/v2/account/keys/{ssh_key_identifier}"): ("ssh_key:read",),
    ("DELETE", "/v2/account/keys/{ssh_key_identifier}"): ("ssh_key:delete",),
    ("GET", "/v2/actions"): ("actions:read",),
    ("GET", "/v2/actions/{action_id}"): ("actions:read",),
    ("GET", "/v2/droplets"): ("droplet:read",),
    ("POST", "/v2/droplets"): ("droplet:create",),
    ("DELETE", "/v2/droplets"): ("droplet:delete",),
    ("GET", "/v2/droplets/{droplet_id}"): ("droplet:read",),
    ("DELETE", "/v2/droplets/{droplet_id}"): ("droplet:delete",),
    ("GET", "/v2/tags"): ("tag:read",),
    ("POST", "/v2/tags"): ("tag:create",),
    ("GET", "/v2/tags/{tag_id}"): ("tag:read",),
    ("DELETE", "/v2/tags/{tag_id}"): ("tag:delete",),
    ("POST", "/v2/tags/{tag_id}/resources"): ("tag:create",),
    ("DELETE", "/v2/tags/{tag_id}/resources"): ("tag:delete",),
    ("GET", "/v2/load_balancers"): ("load_balancer:read",),
    ("POST", "/v2/load_balancers"): ("load_balancer:create",),
    ("GET", "/v2/load_balancers/{lb_id}"): ("load_balancer:read",),
    ("PUT", "/v2/load_balancers/{lb_id}"): ("load_balancer:update",),
    ("DELETE", "/v2/load_balancers/{lb_id}"): ("load_balancer:delete",),
    ("GET", "/v2/monitoring/metrics/load_balancer/droplets_health_checks"): ("monitoring:read",),
    ("GET", "/v2/registries"): ("registry:read",),
    ("POST", "/v2/registries"): ("registry:create",),
    ("POST", "/v2/registries/validate-name"): ("registry:create",),
    ("GET", "/v2/registries/options"): ("registry:read",),
    ("GET", "/v2/registries/subscription"): ("registry:read",),
    ("GET", "/v2/registries/{registry_name}"): ("registry:read",),
    ("DELETE", "/v2/registries/{registry_name}"): ("registry:delete",),
    ("GET", "/v2/registries/{registry_name}/docker-credentials"): ("registry:read", "registry:update"),
    ("GET", "/v2/registries/{registry_name}/repositoriesV2"): ("registry:read",),
    ("GET", "/v2/registries/{registry_name}/repositories/{repository_name}/tags"): ("registry:read",),
    ("DELETE", "/v2/registries/{registry_name}/repositories/{repository_name}/tags/{repository_tag}"):
        ("registry:delete",),
    ("GET", "/v2/sizes"): ("sizes:read",),
}

# DigitalOcean's answer to a token that lacks a scope (its error body, with `forbidden`).
FORBIDDEN_MESSAGE = "You are not authorized to perform this operation"


@dataclass
class Imitations:
    """What the sandbox imitates beyond a healthy account.

    keys_per_minute: GET /v2/account/keys a minute per token (DigitalOcean: 10), 429 with
      `retry-after` beyond it; 0 turns the limit off.
    missing_scopes: scopes the token lacks: their operations answer 403.
    registry_list_404: GET /v2/registries answers 404 while the account has no registry, as
      the legacy GET /v2/registry does.
    taken_registry_names: names another account holds: creating or validating them gets 409.
    professional: the account's plan allows several registries (else a second create is 422).
    failing_creates: the next N droplets created get an errored create action and never
      become active.
    errored_load_balancers: new load balancers end in status `errored` instead of `active`.
    size_regions: size slug -> the only regions offering it (others: every region); sizes not
      offered anywhere are listed with `available: false`.
    lb_health_shape: how the per-droplet LB health metric labels and scales its series:
      "server" (`server` = droplet id, 100 healthy / 0 not, as DigitalOcean's backend metrics
      are reported), "server-ip" (`server` = private address:port), or "droplet_id" (0/1).
    """

    keys_per_minute: int = 10
    missing_scopes: set[str] = field(default_factory=set)
    registry_list_404: bool = False
    taken_registry_names: set[str] = field(default_factory=set)
    professional: bool = False
    failing_creates: int = 0
    errored_load_balancers: bool = False
    size_regions: dict[str, list[str]] = field(default_factory=dict)
    lb_health_shape: str = "server"


class WindowLimit:
    """At most `limit` requests in any `window` seconds (one sliding window, one counter)."""

    def __init__(self, limit: int, window: float):
        self.limit = limit
        self.window = window
        self.hits: collections.deque[float] = collections.deque()

    def hit(self, now: float) -> float:
        """Counts the request and returns 0 when allowed; else the seconds until one is."""
        while self.hits and self.hits[0] <= now - self.window:
            self.hits.popleft()
        if self.limit > 0 and len(self.hits) >= self.limit:
            return self.hits[0] + self.window - now
        self.hits.append(now)
        return 0.0
