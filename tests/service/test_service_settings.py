"""ZDD_* parsing (in-process; the processes' refusals are in test_service_contract)."""

from __future__ import annotations

import pytest

from zdd_service.healthcheck import probe_url
from zdd_service.settings import Settings, SettingsError, load_settings


def test_defaults_are_the_contract() -> None:
    s = load_settings({})
    assert s == Settings()
    # No admin listener unless lb-drain gives it a port.
    assert (s.host, s.port, s.admin_host, s.admin_port) == ("0.0.0.0", 8080, "127.0.0.1", None)
    assert not s.admin_enabled and not s.no_admin
    assert (s.version, s.grace_seconds) == ("dev", 30.0)
    assert (s.fail_health, s.crash_on_start, s.start_delay_seconds, s.latency_ms) == (
        False, False, 0.0, 0.0,
    )
    assert s.admin_is_loopback


def test_values_and_empty_means_unset() -> None:
    s = load_settings({
        "ZDD_HOST": "127.0.1.3", "ZDD_PORT": "8081", "ZDD_ADMIN_HOST": "127.0.1.3",
        "ZDD_ADMIN_PORT": "9191", "ZDD_VERSION": "sha-1234567", "ZDD_GRACE_SECONDS": "2.5",
        "ZDD_FAIL_HEALTH": "true", "ZDD_CRASH_ON_START": "YES", "ZDD_START_DELAY_SECONDS": "3",
        "ZDD_LATENCY_MS": "250",
    })
    assert s == Settings("127.0.1.3", 8081, "127.0.1.3", 9191, "sha-1234567", 2.5, True, True,
                         3.0, 250.0)
    assert s.admin_enabled
    assert load_settings({"ZDD_PORT": "", "ZDD_VERSION": " ", "ZDD_FAIL_HEALTH": "0"}) == Settings()
    assert not load_settings({"ZDD_ADMIN_HOST": "0.0.0.0"}).admin_is_loopback


def test_port_from_zdd_port_else_port() -> None:
    assert load_settings({"PORT": "5000"}).port == 5000
    assert load_settings({"PORT": "5000", "ZDD_PORT": "8081"}).port == 8081
    assert load_settings({"PORT": "5000", "ZDD_PORT": ""}).port == 5000
    with pytest.raises(SettingsError, match=r"^PORT must be"):
        load_settings({"PORT": "web"})


def test_admin_listener_only_when_given_a_port() -> None:
    assert load_settings({"ZDD_ADMIN_PORT": "0"}).admin_port is None
    assert load_settings({"ZDD_ADMIN_PORT": "9090"}).admin_enabled
    plain = load_settings({"ZDD_ADMIN_PORT": "9090", "ZDD_NO_ADMIN": "1"})
    assert plain.no_admin and not plain.admin_enabled


@pytest.mark.parametrize("name, value", [
    ("ZDD_PORT", "-1"), ("ZDD_PORT", "8080.0"), ("ZDD_ADMIN_PORT", "65536"),
    ("ZDD_GRACE_SECONDS", "inf"), ("ZDD_LATENCY_MS", "-0.5"), ("ZDD_FAIL_HEALTH", "2"),
    ("ZDD_HOST", "127.0.0.1 8080"), ("ZDD_ADMIN_HOST", "http://x/"),
])
def test_bad_values_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(SettingsError) as err:
        load_settings({name: value})
    assert str(err.value).startswith(name + " must be")
    assert repr(value) in str(err.value)


def test_probe_url() -> None:
    assert probe_url({}) == "http://127.0.0.1:8080/health"
    assert probe_url({"ZDD_HOST": "0.0.0.0", "ZDD_PORT": "8081"}) == "http://127.0.0.1:8081/health"
    assert probe_url({"ZDD_HOST": "::1"}) == "http://[::1]:8080/health"
    assert probe_url({"PORT": "5000"}) == "http://127.0.0.1:5000/health"
    assert probe_url({"PORT": "5000", "ZDD_PORT": "8081"}) == "http://127.0.0.1:8081/health"
