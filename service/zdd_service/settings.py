"""Settings from the environment (the service contract's ZDD_* variables)."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass


class SettingsError(ValueError):
    """A ZDD_* variable has a value the service cannot use."""


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass(frozen=True)
class Settings:
    host: str = "0.0.0.0"
    port: int = 8080
    admin_host: str = "127.0.0.1"
    # None: no admin listener (ZDD_ADMIN_PORT unset or 0). Only lb-drain's deployer sets it.
    admin_port: int | None = None
    version: str = "dev"
    grace_seconds: float = 30.0
    fail_health: bool = False
    crash_on_start: bool = False
    start_delay_seconds: float = 0.0
    latency_ms: float = 0.0
    # Share of `GET /` answered 500 (0..1): a version that passes its health checks but is bad.
    error_rate: float = 0.0
    # No admin listener even if ZDD_ADMIN_PORT asks for one: the plain contract ($PORT, /health).
    no_admin: bool = False

    @property
    def admin_enabled(self) -> bool:
        return self.admin_port is not None and not self.no_admin

    @property
    def admin_is_loopback(self) -> bool:
        try:
            return ipaddress.ip_address(self.admin_host).is_loopback
        except ValueError:
            return self.admin_host == "localhost"


def _get(env: Mapping[str, str], name: str) -> str | None:
    # An empty value (`docker run -e ZDD_X=`) means "unset", not an error.
    value = env.get(name, "").strip()
    return value or None


def _port(env: Mapping[str, str], name: str, default: int) -> int:
    raw = _get(env, name)
    if raw is None:
        return default
    try:
        port = int(raw, 10)
    except ValueError:
        raise SettingsError(f"{name} must be a port number 0-65535, got {raw!r}") from None
    if not 0 <= port <= 65535:
        raise SettingsError(f"{name} must be a port number 0-65535, got {raw!r}")
    return port


def _seconds(env: Mapping[str, str], name: str, default: float, unit: str) -> float:
    raw = _get(env, name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number of {unit} >= 0, got {raw!r}") from None
    # float() accepts "nan" and "inf"; neither is a usable duration.
    if not (0 <= value < float("inf")):
        raise SettingsError(f"{name} must be a number of {unit} >= 0, got {raw!r}")
    return value


def _share(env: Mapping[str, str], name: str) -> float:
    raw = _get(env, name)
    if raw is None:
        return 0.0
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a share from 0 to 1 (0.05: one request in twenty), got {raw!r}") from None
    if not (0 <= value <= 1):
        raise SettingsError(f"{name} must be a share from 0 to 1 (0.05: one request in twenty), got {raw!r}")
    return value


def _flag(env: Mapping[str, str], name: str) -> bool:
    raw = _get(env, name)
    if raw is None:
        return False
    if raw.lower() in _TRUE:
        return True
    if raw.lower() in _FALSE:
        return False
    raise SettingsError(f"{name} must be 1 or 0 (also true/false, yes/no, on/off), got {raw!r}")


def _host(env: Mapping[str, str], name: str, default: str) -> str:
    raw = _get(env, name)
    if raw is None:
        return default
    if any(c.isspace() for c in raw) or "/" in raw:
        raise SettingsError(f"{name} must be an IP address or host name, got {raw!r}")
    return raw


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if env is None else env
    # ZDD_PORT (what lb-drain sets), else $PORT (what a PaaS, and local-swap, sets), else 8080.
    port_name = "ZDD_PORT" if _get(env, "ZDD_PORT") is not None else "PORT"
    admin_port = _port(env, "ZDD_ADMIN_PORT", 0)
    return Settings(
        host=_host(env, "ZDD_HOST", Settings.host),
        port=_port(env, port_name, Settings.port),
        admin_host=_host(env, "ZDD_ADMIN_HOST", Settings.admin_host),
        admin_port=admin_port or None,
        version=_get(env, "ZDD_VERSION") or Settings.version,
        grace_seconds=_seconds(env, "ZDD_GRACE_SECONDS", Settings.grace_seconds, "seconds"),
        fail_health=_flag(env, "ZDD_FAIL_HEALTH"),
        crash_on_start=_flag(env, "ZDD_CRASH_ON_START"),
        start_delay_seconds=_seconds(
            env, "ZDD_START_DELAY_SECONDS", Settings.start_delay_seconds, "seconds"
        ),
        latency_ms=_seconds(env, "ZDD_LATENCY_MS", Settings.latency_ms, "milliseconds"),
        no_admin=_flag(env, "ZDD_NO_ADMIN"),
        error_rate=_share(env, "ZDD_ERROR_RATE"),
    )
