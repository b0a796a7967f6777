"""The sandbox's DigitalOcean account: droplets, load balancers, tags, keys, actions, registry.

Objects are kept in DigitalOcean's own JSON shapes so the API layer serves them as they are.
Sandbox-only data lives under keys starting with "_" (e.g. a droplet's `_sandbox`, a registry tag's
`_behaviour`), which `public()` strips before anything is served. The whole account is one JSON
file, `<state_dir>/api-state.json`, rewritten atomically after every change, so a stopped sandbox
starts again where it was.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
import uuid
import zlib
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from zdd_tui.sandbox import images

STATE_FILE = "api-state.json"
STATE_VERSION = 1

REGIONS = ["nyc1", "nyc3", "sfo2", "sfo3", "ams3", "sgp1", "lon1", "fra1", "tor1", "blr1", "syd1"]

# Slug -> (memory MB, vcpus, disk GB, transfer TB, monthly USD). Prices as DigitalOcean lists them.
SIZES: dict[str, tuple[int, int, int, float, float]] = {
    "s-1vcpu-512mb-10gb": (512, 1, 10, 0.5, 4.0),
    "s-1vcpu-1gb": (1024, 1, 25, 1.0, 6.0),
    "s-1vcpu-2gb": (2048, 1, 50, 2.0, 12.0),
    "s-2vcpu-2gb": (2048, 2, 60, 3.0, 18.0),
    "s-2vcpu-4gb": (4096, 2, 80, 4.0, 24.0),
    "s-4vcpu-8gb": (8192, 4, 160, 5.0, 48.0),
}

# Container registry subscription tiers (GET /v2/registries/options).
REGISTRY_TIERS = [
    {"name": "Starter", "slug": "starter", "included_repositories": 1,
     "included_storage_bytes": 524288000, "allow_storage_overage": False,
     "included_bandwidth_bytes": 524288000, "monthly_price_in_cents": 0,
     "storage_overage_price_in_cents": 0},
    {"name": "Basic", "slug": "basic", "included_repositories": 5,
     "included_storage_bytes": 5368709120, "allow_storage_overage": True,
     "included_bandwidth_bytes": 5368709120, "monthly_price_in_cents": 500,
     "storage_overage_price_in_cents": 2},
    {"name": "Professional", "slug": "professional", "included_repositories": 0,
     "included_storage_bytes": 107374182400, "allow_storage_overage": True,
     "included_bandwidth_bytes": 107374182400, "monthly_price_in_cents": 2000,
     "storage_overage_price_in_cents": 2},
]

BEHAVIOURS = tuple(images.BEHAVIOURS)  # what a registry tag may be (sandbox-only)


def now_iso(epoch: float | None = None) -> str:
    t = datetime.fromtimestamp(time.time() if epoch is None else epoch, tz=UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def public(obj: Any) -> Any:
    """A deep copy without sandbox-only keys (those starting with "_")."""
    if isinstance(obj, dict):
        return {k: public(v) for k, v in obj.items() if not k.startswith("_")}
    if isinstance(obj, list):
        return [public(v) for v in obj]
    return obj


def region_obj(slug: str) -> dict:
    return {
        "name": slug.upper(),
        "slug": slug,
        "features": ["private_networking", "backups", "ipv6", "metadata", "install_agent"],
        "available": True,
        "sizes": list(SIZES),
    }


def size_obj(slug: str) -> dict:
    mem, vcpus, disk, transfer, monthly = SIZES.get(slug, (1024, 1, 25, 1.0, 6.0))
    return {
        "slug": slug,
        "memory": mem,
        "vcpus": vcpus,
        "disk": disk,
        "transfer": transfer,
        "price_monthly": monthly,
        "price_hourly": round(monthly / 672, 5),
        "regions": list(REGIONS),
        "available": True,
        "description": "Basic",
    }


def fake_digest(*parts: str) -> str:
    return "sha256:" + hashlib.sha256("\0".join(parts).encode()).hexdigest()


# Load balancer settings the sandbox does not act on but keeps as given, as DigitalOcean does;
# a PUT that leaves them out loses them (PUT replaces the whole object).
LB_KEPT = ("firewall", "vpc_uuid", "project_id", "tls_cipher_policy", "type", "network", "network_stack")


def lb_settings_kept(body: dict) -> dict:
    return {k: body[k] for k in LB_KEPT if body.get(k) is not None}


def _networks(d: dict) -> dict:
    """A droplet's networks: the published ones, else those it gets when it is up."""
    published = d.get("networks") or {}
    if published.get("v4"):
        return published
    return (d.get("_sandbox") or {}).get("networks") or published


def _hide_networks(d: dict, at: float) -> None:
    """A new droplet has no addresses yet (DigitalOcean's `networks.v4` is empty while it boots):
    they are kept aside and published at `at` (normally when it turns active)."""
    d["_sandbox"]["networks"] = d["networks"]
    d["_sandbox"]["networks_at"] = at
    d["networks"] = {"v4": [], "v6": []}


def _show_networks(d: dict) -> None:
    sb = d.get("_sandbox") or {}
    networks = sb.pop("networks", None)
    sb.pop("networks_at", None)
    if networks is not None:
        d["networks"] = networks


class NotFound(Exception):
    pass


class Invalid(Exception):
    """422-style: the request's values are wrong."""


class SandboxState:
    """The account's objects, persisted to `<state_dir>/api-state.json` (None: memory only).

    `activation_delay`: seconds a droplet or load balancer stays "new" (a droplet's create action
    "in-progress"); while new, a droplet has no `networks.v4` and a load balancer `ip: ""`, as on
    DigitalOcean. A droplet's addresses are published at `_sandbox.networks_at` (its activation,
    unless moved later: DigitalOcean can report `active` a moment before the addresses).
    `address_allocator(droplet) -> (public_ipv4, private_ipv4 | None)` picks a new droplet's
    addresses; the default hands out 127.0.1.N (N = 2..254, the lowest free one).
    """

    def __init__(
        self,
        state_dir: str | Path | None,
        *,
        activation_delay: float = 1.0,
        address_allocator: Callable[[dict], tuple[str, str | None]] | None = None,
    ):
        self.path = Path(state_dir) / STATE_FILE if state_dir else None
        self.activation_delay = activation_delay
        self.address_allocator = address_allocator or self._default_address
        self.data: dict = self._empty()
        if self.path and self.path.exists():
            loaded = json.loads(self.path.read_text())
            if loaded.get("version") == STATE_VERSION:
                self.data.update(loaded)

    @staticmethod
    def _empty() -> dict:
        return {
            "version": STATE_VERSION,
            "account_uuid": str(uuid.uuid4()),
            "next_droplet_id": 300000001,
            "next_action_id": 2000000001,
            "next_key_id": 41000001,
            "droplets": {},  # str(id) -> droplet
            "load_balancers": {},  # id -> lb
            "tags": [],
            "ssh_keys": {},  # str(id) -> key
            "actions": {},  # str(id) -> action
            "registry": None,
            "repositories": {},  # repo -> {tag -> record}
        }

    # ---- persistence -------------------------------------------------------------------------

    def save(self) -> None:
        if not self.path:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".api-state.")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(self.data, f)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    # ---- time-driven transitions -------------------------------------------------------------

    def refresh(self) -> None:
        """Droplets whose activation time has passed become active; their actions complete."""
        now = time.time()
        changed = False
        for d in self.data["droplets"].values():
            sb = d.get("_sandbox", {})
            if d["status"] == "new" and sb.get("active_at", 0) <= now:
                self._complete_create(d)
                changed = True
            if "networks" in sb and sb.get("networks_at", 0) <= now:
                _show_networks(d)
                changed = True
        for lb in self.data["load_balancers"].values():
            if lb["status"] == "new" and lb.get("_active_at", 0) <= now:
                self.activate_load_balancer(lb)
                changed = True
        if changed:
            self.save()

    def _complete_create(self, d: dict) -> None:
        d["status"] = "active"
        action = self.data["actions"].get(str((d.get("_sandbox") or {}).get("create_action_id")))
        if action and action["status"] == "in-progress":
            action["status"] = "completed"
            action["completed_at"] = now_iso()

    def activate_droplet(self, d: dict) -> None:
        """Up at once (a droplet the account already has): active, with its addresses."""
        self._complete_create(d)
        _show_networks(d)

    def activate_load_balancer(self, lb: dict) -> None:
        """The load balancer is up: status active, with its address."""
        lb["status"] = "active"
        if "_ip" in lb:
            lb["ip"] = lb.pop("_ip")

    # ---- droplets ----------------------------------------------------------------------------

    def _default_address(self, droplet: dict) -> tuple[str, str | None]:
        used = {self.droplet_ipv4(d, "public") for d in self.data["droplets"].values()}
        for n in range(2, 255):
            addr = f"127.0.1.{n}"
            if addr not in used:
                return addr, None
        raise Invalid("the sandbox has no free address left (127.0.1.2-254)")

    @staticmethod
    def droplet_ipv4(d: dict, kind: str) -> str | None:
        """The droplet's address of `kind`, published or still to be published."""
        for n in _networks(d).get("v4", []):
            if n.get("type") == kind:
                return n["ip_address"]
        return None

    def droplets(self, tag: str | None = None, name: str | None = None) -> list[dict]:
        out = sorted(self.data["droplets"].values(), key=lambda d: d["id"])
        if tag is not None:
            out = [d for d in out if tag in d["tags"]]
        if name is not None:
            out = [d for d in out if d["name"] == name]
        return out

    def droplet(self, droplet_id: int | str) -> dict:
        d = self.data["droplets"].get(str(droplet_id))
        if d is None:
            raise NotFound("The resource you were accessing could not be found.")
        return d

    def create_droplet(
        self,
        name: str,
        *,
        region: str = "nyc3",
        size: str = "s-1vcpu-1gb",
        image: str | int = "debian-12-x64",
        tags: list[str] | None = None,
        public_ipv4: str | None = None,
        private_ipv4: str | None = None,
        sandbox: dict | None = None,
        save: bool = True,
    ) -> dict:
        """Create one droplet (status "new") and its create action; returns the stored dict.

        `sandbox` goes into the droplet's `_sandbox` (never served), e.g. {"external": True}.
        """
        did = self.data["next_droplet_id"]
        self.data["next_droplet_id"] += 1
        tags = list(dict.fromkeys(tags or []))
        for t in tags:
            self._ensure_tag(t)
        mem, vcpus, disk, _, _ = SIZES.get(size, (1024, 1, 25, 1.0, 6.0))
        now = time.time()
        d = {
            "id": did,
            "name": name,
            "memory": mem,
            "vcpus": vcpus,
            "disk": disk,
            "locked": False,
            "status": "new",
            "created_at": now_iso(now),
            "features": ["monitoring"],
            "backup_ids": [],
            "next_backup_window": None,
            "snapshot_ids": [],
            "image": {
                "id": 100000000 + zlib.crc32(str(image).encode()) % 1000000,
                "name": str(image),
                "distribution": "Debian",
                "slug": str(image) if isinstance(image, str) else None,
                "public": True,
                "regions": [region],
                "created_at": "2024-01-01T00:00:00Z",
                "type": "base",
                "min_disk_size": 15,
                "size_gigabytes": 2.5,
                "status": "available",
                "tags": [],
            },
            "volume_ids": [],
            "size": size_obj(size),
            "size_slug": size,
            "networks": {"v4": [], "v6": []},
            "region": region_obj(region),
            "tags": tags,
            "vpc_uuid": "5a4981aa-9653-4bd1-bef5-d6bff52042e4",
            "_sandbox": dict(sandbox or {}),
        }
        if public_ipv4 is None:
            public_ipv4, allocated_private = self.address_allocator(d)
            private_ipv4 = private_ipv4 or allocated_private
        d["networks"]["v4"].append(
            {"ip_address": public_ipv4, "netmask": "255.255.255.0", "gateway": "127.0.0.1", "type": "public"}
        )
        if private_ipv4:
            d["networks"]["v4"].append(
                {"ip_address": private_ipv4, "netmask": "255.255.0.0", "gateway": "127.0.0.1", "type": "private"}
            )
        action = self.new_action("create", did, "droplet", region)
        d["_sandbox"]["create_action_id"] = action["id"]
        d["_sandbox"]["active_at"] = now + self.activation_delay
        _hide_networks(d, now + self.activation_delay)
        self.data["droplets"][str(did)] = d
        if save:
            self.save()
        return d

    def delete_droplet(self, droplet_id: int | str) -> dict:
        d = self.droplet(droplet_id)
        del self.data["droplets"][str(droplet_id)]
        self.save()
        return d

    # ---- actions -----------------------------------------------------------------------------

    def new_action(self, type_: str, resource_id: int | None, resource_type: str, region: str) -> dict:
        aid = self.data["next_action_id"]
        self.data["next_action_id"] += 1
        a = {
            "id": aid,
            "status": "in-progress",
            "type": type_,
            "started_at": now_iso(),
            "completed_at": None,
            "resource_id": resource_id,
            "resource_type": resource_type,
            "region": region_obj(region),
            "region_slug": region,
        }
        self.data["actions"][str(aid)] = a
        return a

    def action(self, action_id: int | str) -> dict:
        a = self.data["actions"].get(str(action_id))
        if a is None:
            raise NotFound("The resource you were accessing could not be found.")
        return a

    # ---- tags --------------------------------------------------------------------------------

    def _ensure_tag(self, name: str) -> None:
        if name not in self.data["tags"]:
            self.data["tags"].append(name)

    def tag_obj(self, name: str) -> dict:
        if name not in self.data["tags"]:
            raise NotFound("The resource you were accessing could not be found.")
        tagged = [d for d in self.droplets() if name in d["tags"]]
        last = f"/v2/droplets/{tagged[-1]['id']}" if tagged else ""
        meta = {"count": len(tagged), "last_tagged_uri": last}
        return {
            "name": name,
            "resources": {
                "count": len(tagged),
                "last_tagged_uri": last,
                "droplets": dict(meta),
                "imgages": {"count": 0},
                "volumes": {"count": 0},
                "volume_snapshots": {"count": 0},
                "databases": {"count": 0},
            },
        }

    def create_tag(self, name: str) -> dict:
        self._ensure_tag(name)
        self.save()
        return self.tag_obj(name)

    def delete_tag(self, name: str) -> None:
        if name not in self.data["tags"]:
            raise NotFound("The resource you were accessing could not be found.")
        self.data["tags"].remove(name)
        for d in self.data["droplets"].values():
            if name in d["tags"]:
                d["tags"].remove(name)
        self.save()

    def tag_resources(self, name: str, resources: list[dict], *, add: bool) -> None:
        if name not in self.data["tags"]:
            raise NotFound("The resource you were accessing could not be found.")
        targets = []
        for r in resources:
            if r.get("resource_type", "droplet") != "droplet":
                raise Invalid(f"resource_type {r.get('resource_type')!r} is not supported by the sandbox")
            if r.get("resource_id") is None:
                raise Invalid("resource_id is required")
            targets.append(self.droplet(r["resource_id"]))
        for d in targets:
            if add and name not in d["tags"]:
                d["tags"].append(name)
            elif not add and name in d["tags"]:
                d["tags"].remove(name)
        self.save()

    # ---- ssh keys ----------------------------------------------------------------------------

    def ssh_keys(self) -> list[dict]:
        return sorted(self.data["ssh_keys"].values(), key=lambda k: k["id"])

    def ssh_key(self, ident: str) -> dict:
        for k in self.data["ssh_keys"].values():
            if str(k["id"]) == str(ident) or k["fingerprint"] == ident:
                return k
        raise NotFound("The resource you were accessing could not be found.")

    def create_ssh_key(self, name: str, public_key: str) -> dict:
        parts = public_key.split()
        if len(parts) < 2 or not parts[0].startswith(("ssh-", "ecdsa-")):
            raise Invalid("Key invalid type, we support 'ssh-rsa', 'ssh-dss', 'ecdsa-sha2-nistp' and 'ssh-ed25519'")
        import base64

        try:
            raw = base64.b64decode(parts[1], validate=True)
        except ValueError:
            raise Invalid("Key invalid, it must be in OpenSSH public key format") from None
        md5 = hashlib.md5(raw).hexdigest()  # DigitalOcean's fingerprint is the MD5 one
        fingerprint = ":".join(md5[i : i + 2] for i in range(0, 32, 2))
        for k in self.data["ssh_keys"].values():
            if k["fingerprint"] == fingerprint:
                raise Invalid("SSH Key is already in use on your account")
        kid = self.data["next_key_id"]
        self.data["next_key_id"] += 1
        key = {"id": kid, "fingerprint": fingerprint, "public_key": public_key.strip(), "name": name}
        self.data["ssh_keys"][str(kid)] = key
        self.save()
        return key

    def delete_ssh_key(self, ident: str) -> None:
        k = self.ssh_key(ident)
        del self.data["ssh_keys"][str(k["id"])]
        self.save()

    # ---- load balancers ----------------------------------------------------------------------

    def load_balancers(self) -> list[dict]:
        return sorted(self.data["load_balancers"].values(), key=lambda lb: lb["created_at"] + lb["id"])

    def load_balancer(self, lb_id: str) -> dict:
        lb = self.data["load_balancers"].get(lb_id)
        if lb is None:
            raise NotFound("The resource you were accessing could not be found.")
        return lb

    def _lb_from_body(self, body: dict, lb_id: str, created_at: str, ip: str | None, status: str) -> dict:
        if not body.get("name"):
            raise Invalid("name is required")
        if body.get("tag") and body.get("droplet_ids"):
            raise Invalid("droplet_ids and tag are mutually exclusive")
        rules = body.get("forwarding_rules") or []
        if not rules:
            raise Invalid("forwarding_rules must have at least one rule")
        for r in rules:
            for k in ("entry_protocol", "entry_port", "target_protocol", "target_port"):
                if k not in r:
                    raise Invalid(f"forwarding_rules: {k} is required")
        hc_in = body.get("health_check") or {}
        hc = {
            "protocol": hc_in.get("protocol", "http"),
            "port": int(hc_in.get("port", 80)),
            "path": hc_in.get("path", "/"),
            "check_interval_seconds": int(hc_in.get("check_interval_seconds", 10)),
            "response_timeout_seconds": int(hc_in.get("response_timeout_seconds", 5)),
            "unhealthy_threshold": int(hc_in.get("unhealthy_threshold", 5)),
            "healthy_threshold": int(hc_in.get("healthy_threshold", 3)),
        }
        for k, lo, hi in (
            ("check_interval_seconds", 3, 300),
            ("response_timeout_seconds", 3, 300),
            ("unhealthy_threshold", 2, 10),
            ("healthy_threshold", 2, 10),
        ):
            if not lo <= hc[k] <= hi:
                raise Invalid(f"health_check.{k} must be between {lo} and {hi}")
        tag = body.get("tag") or ""
        droplet_ids = [] if tag else [int(i) for i in body.get("droplet_ids") or []]
        for i in droplet_ids:
            self.droplet(i)
        region = body.get("region") or "nyc3"
        if isinstance(region, dict):
            region = region.get("slug", "nyc3")
        return {
            "id": lb_id,
            "name": body["name"],
            "ip": ip or "",
            "size_unit": int(body.get("size_unit", 1)),
            "algorithm": "round_robin",
            "status": status,
            "created_at": created_at,
            "forwarding_rules": [
                {k: r[k] for k in ("entry_protocol", "entry_port", "target_protocol", "target_port")}
                | ({"certificate_id": r.get("certificate_id", "")})
                | {"tls_passthrough": bool(r.get("tls_passthrough", False))}
                for r in rules
            ],
            "health_check": hc,
            "sticky_sessions": body.get("sticky_sessions") or {"type": "none"},
            "redirect_http_to_https": bool(body.get("redirect_http_to_https", False)),
            "enable_proxy_protocol": bool(body.get("enable_proxy_protocol", False)),
            "enable_backend_keepalive": bool(body.get("enable_backend_keepalive", False)),
            "http_idle_timeout_seconds": int(body.get("http_idle_timeout_seconds", 60)),
            "disable_lets_encrypt_dns_records": False,
            "region": region_obj(region),
            "droplet_ids": droplet_ids,
            "tag": tag,
        } | lb_settings_kept(body)

    def create_load_balancer(self, body: dict, *, ip: str = "127.0.0.1") -> dict:
        lb_id = str(uuid.uuid4())
        # A new load balancer has no address yet (DigitalOcean answers `ip: ""` until it is active).
        lb = self._lb_from_body(body, lb_id, now_iso(), "", "new")
        lb["_ip"] = ip
        lb["_active_at"] = time.time() + self.activation_delay
        self.data["load_balancers"][lb_id] = lb
        self.save()
        return lb

    def update_load_balancer(self, lb_id: str, body: dict) -> dict:
        """PUT semantics: the body replaces the whole object (omitted fields take defaults)."""
        old = self.load_balancer(lb_id)
        lb = self._lb_from_body(body, lb_id, old["created_at"], old["ip"], old["status"])
        lb["_active_at"] = old.get("_active_at", 0)
        for k, v in old.items():
            if k.startswith("_"):
                lb[k] = v
        self.data["load_balancers"][lb_id] = lb
        self.save()
        return lb

    def delete_load_balancer(self, lb_id: str) -> None:
        self.load_balancer(lb_id)
        del self.data["load_balancers"][lb_id]
        self.save()

    def lb_droplets(self, lb: dict) -> list[dict]:
        """The droplets the LB targets: by tag, or by id."""
        if lb.get("tag"):
            return self.droplets(tag=lb["tag"])
        return [self.data["droplets"][str(i)] for i in lb["droplet_ids"] if str(i) in self.data["droplets"]]

    # ---- registry ----------------------------------------------------------------------------

    def registry(self, name: str | None = None) -> dict:
        reg = self.data["registry"]
        if name is not None:
            reg = next((r for r in self.registries() if r["name"] == name), None)
        if reg is None:
            raise NotFound("registry not found" if name is None else f"registry {name!r} not found")
        return reg

    def registries(self) -> list[dict]:
        """Every registry: the first one, then those a Professional plan adds ("more_registries")."""
        first = [self.data["registry"]] if self.data["registry"] else []
        return first + list(self.data.get("more_registries") or [])

    def delete_registry(self, name: str) -> None:
        reg = self.registry(name)
        if reg is self.data["registry"]:
            more = list(self.data.get("more_registries") or [])
            self.data["registry"] = more.pop(0) if more else None
            self.data["more_registries"] = more
        else:
            self.data["more_registries"] = [r for r in self.data.get("more_registries") or [] if r is not reg]
        self.save()

    def create_registry(
        self, name: str, tier: str = "starter", region: str | None = None, *, several: bool = False
    ) -> dict:
        import re

        if not re.fullmatch(r"[a-z0-9-]{1,63}", name or ""):
            raise Invalid("name must be 1-63 lowercase letters, digits and '-'")
        if tier not in {t["slug"] for t in REGISTRY_TIERS}:
            raise Invalid("subscription_tier_slug must be one of starter, basic, professional")
        if any(r["name"] == name for r in self.registries()):
            raise Invalid(f"a registry named {name!r} already exists on this account")
        if self.data["registry"] is not None and not several:
            raise Invalid("a registry already exists on this account")
        reg = {
            "name": name,
            "created_at": now_iso(),
            "region": region or "nyc3",
            "storage_usage_bytes": 0,
            "storage_usage_bytes_updated_at": now_iso(),
            "_tier": tier,
        }
        if self.data["registry"] is None:
            self.data["registry"] = reg
        else:
            self.data.setdefault("more_registries", []).append(reg)
        self.save()
        return reg

    def put_registry_tag(
        self,
        repository: str,
        tag: str,
        *,
        behaviour: str = "ok",
        manifest_digest: str | None = None,
        compressed_size_bytes: int = 23_000_000,
        updated_at: str | None = None,
        extra: dict | None = None,
    ) -> dict:
        """Add or replace a tag in the in-memory registry. `behaviour` is sandbox-only (never served).

        `extra` is stored under `_extra` (sandbox-only; e.g. the environment a version carries).
        """
        if behaviour not in BEHAVIOURS:
            raise Invalid(f"behaviour must be one of {', '.join(BEHAVIOURS)}")
        rec = {
            "tag": tag,
            "manifest_digest": manifest_digest or fake_digest(repository, tag, behaviour),
            "compressed_size_bytes": int(compressed_size_bytes),
            "size_bytes": int(compressed_size_bytes) * 2,
            "updated_at": updated_at or now_iso(),
            "_behaviour": behaviour,
            "_extra": dict(extra or {}),
        }
        self.data["repositories"].setdefault(repository, {})[tag] = rec
        self.save()
        return rec

    def delete_registry_tag(self, repository: str, tag: str) -> None:
        tags = self.data["repositories"].get(repository, {})
        if tag not in tags:
            raise NotFound(f"tag {tag!r} not found in repository {repository!r}")
        del tags[tag]
        self.save()

    def registry_tags(self, repository: str) -> list[dict]:
        """Newest first (then by name, for a stable order)."""
        tags = list(self.data["repositories"].get(repository, {}).values())
        tags.sort(key=lambda t: t["tag"])
        tags.sort(key=lambda t: t["updated_at"], reverse=True)
        return tags
