"""The service contract (service/README.md), against real processes on loopback."""

from __future__ import annotations

import re
import time

import pytest

from service_testkit import StartService, free_port, port_open, request


def test_root_health_and_identity(start_service: StartService) -> None:
    svc = start_service(ZDD_VERSION="sha-abc1234")
    status, body, headers = svc.get("/")
    assert status == 200
    assert headers["Content-Type"].startswith("application/json")
    assert set(body) == {"api", "id", "version"}
    assert body["api"] == "happy response"
    assert body["version"] == "sha-abc1234"
    assert re.fullmatch(r"[0-9a-f]{16}", body["id"])
    # Stable for the life of the process, different in another process.
    assert svc.get("/")[1]["id"] == body["id"]
    other = start_service()
    other_body = other.get("/")[1]
    assert other_body["id"] != body["id"]
    assert other_body["version"] == "dev"

    assert svc.get("/health")[:2] == (200, {"status": "ok"})
    # HEAD is a GET without a body (some checkers use it).
    assert svc.get("/health", method="HEAD")[0] == 200


def test_public_port_serves_nothing_else(start_service: StartService) -> None:
    svc = start_service()
    for method, path in [
        ("GET", "/admin/stats"),
        ("POST", "/admin/drain"),
        ("POST", "/admin/undrain"),
        ("GET", "/shutdown"),  # the seed's bug: an internet-facing shutdown
        ("GET", "/nope"),
        ("GET", "/health/"),
        ("POST", "/"),
        ("DELETE", "/health"),
    ]:
        status, body, _ = svc.get(path, method=method)
        assert (method, path, status) == (method, path, 404), body
    # The public admin paths did nothing: still not draining.
    stats = svc.stats()
    assert stats["draining"] is False
    assert svc.get("/health")[0] == 200
    # 404s are public requests too, and counted as served.
    assert stats["served"] == 8


def test_admin_answers_only_on_127_0_0_1(start_service: StartService) -> None:
    # Public on 127.0.0.2 so both addresses have a listener on some port; the admin port
    # (ZDD_ADMIN_HOST left at its default) must exist on 127.0.0.1 only.
    svc = start_service(ZDD_HOST="127.0.0.2")
    assert "ZDD_ADMIN_HOST" not in svc.env
    assert port_open("127.0.0.1", svc.admin_port)
    assert not port_open("127.0.0.2", svc.admin_port)
    assert port_open("127.0.0.2", svc.port)
    assert not port_open("127.0.0.1", svc.port)
    assert svc.admin("/admin/stats")[0] == 200
    assert svc.get("/admin/stats")[0] == 404
    line = svc.wait_line("zdd-service listening")
    assert f"admin=127.0.0.1:{svc.admin_port}" in line
    assert f"public=127.0.0.2:{svc.port}" in line


def test_admin_host_and_port_are_configurable(start_service: StartService) -> None:
    # The sandbox puts each host's admin port on its own loopback address (127.0.1.N).
    svc = start_service(ZDD_ADMIN_HOST="127.0.1.7")
    assert f"admin=127.0.1.7:{svc.admin_port} " in svc.wait_line("zdd-service listening")
    assert svc.admin("/admin/stats")[0] == 200
    assert not port_open("127.0.0.1", svc.admin_port)


def test_stats_counters(start_service: StartService) -> None:
    svc = start_service(ZDD_VERSION="v9")
    stats = svc.stats()
    assert set(stats) == {
        "id", "version", "draining", "healthy", "served", "in_flight",
        "last_request_age_seconds", "uptime_seconds", "health_checkers",
    }
    assert stats["id"] == svc.get("/")[1]["id"]
    stats = svc.stats()
    assert stats["version"] == "v9"
    assert stats["draining"] is False and stats["healthy"] is True
    # The GET / above; /health is not a served public request.
    assert stats["served"] == 1
    assert stats["in_flight"] == 0
    assert isinstance(stats["last_request_age_seconds"], float)
    assert 0 <= stats["last_request_age_seconds"] < 5
    assert stats["uptime_seconds"] > 0

    for _ in range(3):
        svc.get("/")
    svc.get("/health")
    svc.get("/missing")
    stats = svc.stats()
    assert stats["served"] == 5


def test_last_request_age_is_null_before_any_public_request(start_service: StartService) -> None:
    svc = start_service()
    svc.get("/health")  # health checks are not public traffic
    first = svc.stats()
    assert first["last_request_age_seconds"] is None
    assert first["served"] == 0
    time.sleep(0.2)
    assert svc.stats()["uptime_seconds"] > first["uptime_seconds"]


@pytest.mark.slow
async def test_in_flight_counts_requests_being_served(start_service: StartService) -> None:
    import asyncio

    import aiohttp

    svc = start_service(ZDD_LATENCY_MS="3000")
    async with aiohttp.ClientSession() as session:
        tasks = [asyncio.ensure_future(session.get(svc.url("/"))) for _ in range(3)]
        deadline = time.monotonic() + 10
        seen = 0
        while seen < 3 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
            seen = svc.stats()["in_flight"]
        assert seen == 3
        # Health checks are not public traffic and do not count.
        assert svc.get("/health")[0] == 200
        assert svc.stats()["in_flight"] == 3
        for resp in await asyncio.gather(*tasks):
            assert resp.status == 200
            resp.release()
    stats = svc.stats()
    assert stats["in_flight"] == 0 and stats["served"] == 3


def test_drain_and_undrain(start_service: StartService) -> None:
    svc = start_service()
    assert svc.admin("/admin/drain", method="POST")[:2] == (200, {"draining": True})
    status, body, headers = svc.get("/health")
    assert (status, body) == (503, {"status": "draining"})
    # Still serving: draining only tells the LB to stop; it closes kept-alive connections.
    status, body, headers = svc.get("/")
    assert status == 200 and body["api"] == "happy response"
    assert headers["Connection"] == "close"
    stats = svc.stats()
    assert stats["draining"] is True and stats["healthy"] is False
    # Idempotent.
    assert svc.admin("/admin/drain", method="POST")[:2] == (200, {"draining": True})

    assert svc.admin("/admin/undrain", method="POST")[:2] == (200, {"draining": False})
    assert svc.get("/health")[:2] == (200, {"status": "ok"})
    assert svc.stats()["draining"] is False
    assert svc.admin("/admin/undrain", method="POST")[:2] == (200, {"draining": False})
    assert any(line.startswith("zdd-service draining reason=admin") for line in svc.lines)
    assert any(line.startswith("zdd-service undrained reason=admin") for line in svc.lines)


def test_admin_rejects_wrong_methods_and_paths(start_service: StartService) -> None:
    svc = start_service()
    assert svc.admin("/admin/drain", method="GET")[0] == 405
    assert svc.admin("/admin/undrain", method="GET")[0] == 405
    status, _, headers = svc.admin("/admin/stats", method="POST")
    assert status == 405 and headers["Allow"] == "GET"
    assert svc.admin("/admin/nope")[0] == 404
    assert svc.admin("/")[0] == 404
    # Neither wrong method drained it.
    assert svc.stats()["draining"] is False


def checker(svc, source: str) -> dict:
    found = [c for c in svc.stats()["health_checkers"] if c["source"] == source]
    assert len(found) == 1, svc.stats()["health_checkers"]
    return found[0]


def test_health_checker_counters_per_source(start_service: StartService) -> None:
    svc = start_service()
    for _ in range(3):
        assert svc.get("/health", source="127.0.0.1")[0] == 200
    assert svc.get("/health", source="127.0.0.3")[0] == 200
    a = checker(svc, "127.0.0.1")
    assert (a["consecutive_ok"], a["consecutive_fail"]) == (3, 0)
    assert 0 <= a["last_age_seconds"] < 5
    b = checker(svc, "127.0.0.3")
    assert (b["consecutive_ok"], b["consecutive_fail"]) == (1, 0)

    # A 503 zeroes consecutive_ok and counts failures; other sources are untouched.
    svc.admin("/admin/drain", method="POST")
    for _ in range(2):
        assert svc.get("/health", source="127.0.0.1")[0] == 503
    a = checker(svc, "127.0.0.1")
    assert (a["consecutive_ok"], a["consecutive_fail"]) == (0, 2)
    b = checker(svc, "127.0.0.3")
    assert (b["consecutive_ok"], b["consecutive_fail"]) == (1, 0)

    # And back.
    svc.admin("/admin/undrain", method="POST")
    assert svc.get("/health", source="127.0.0.1")[0] == 200
    a = checker(svc, "127.0.0.1")
    assert (a["consecutive_ok"], a["consecutive_fail"]) == (1, 0)
    assert [c["source"] for c in svc.stats()["health_checkers"]] == ["127.0.0.1", "127.0.0.3"]


def test_probe_header_is_not_a_checker(start_service: StartService) -> None:
    svc = start_service()
    # Marked probes get the real answer...
    assert svc.get("/health", headers={"X-Zdd-Probe": "deployer"}, source="127.0.0.4")[0] == 200
    svc.admin("/admin/drain", method="POST")
    assert svc.get("/health", headers={"x-zdd-probe": "docker"}, source="127.0.0.4")[:2] == (
        503, {"status": "draining"},
    )
    # ...but are never counted as load-balancer checks.
    assert svc.stats()["health_checkers"] == []
    assert svc.get("/health", source="127.0.0.4")[0] == 503
    c = checker(svc, "127.0.0.4")
    assert (c["consecutive_ok"], c["consecutive_fail"]) == (0, 1)
    assert svc.get("/health", headers={"X-Zdd-Probe": "x"}, source="127.0.0.4")[0] == 503
    assert checker(svc, "127.0.0.4")["consecutive_fail"] == 1


def test_lifecycle_log_lines(start_service: StartService) -> None:
    import signal

    svc = start_service(ZDD_VERSION="v1")
    svc.signal(signal.SIGTERM)
    assert svc.wait_exit(timeout=10) == 0
    events = [line.split()[1] for line in svc.lines if line.startswith("zdd-service ")]
    assert events == ["starting", "listening", "draining", "stopped"], svc.lines
    assert "version=v1" in svc.lines[0]
    assert f"pid={svc.pid}" in svc.lines[0]
    assert "reason=SIGTERM" in svc.lines[2]
    assert svc.err_lines == []


@pytest.mark.parametrize(
    "env, message",
    [
        ({"ZDD_PORT": "http"}, "ZDD_PORT must be a port number 0-65535, got 'http'"),
        ({"ZDD_LATENCY_MS": "fast"}, "ZDD_LATENCY_MS must be a number of milliseconds >= 0"),
        ({"ZDD_FAIL_HEALTH": "maybe"}, "ZDD_FAIL_HEALTH must be 1 or 0"),
    ],
)
def test_bad_environment_is_refused(start_service: StartService, env, message) -> None:
    svc = start_service(wait=False, **env)
    assert svc.wait_exit(timeout=10) == 2
    assert len(svc.err_lines) == 1
    assert svc.err_lines[0].startswith("zdd-service: error: " + message)
    assert not any("listening" in line for line in svc.lines)


def test_port_in_use_fails_with_exit_1(start_service: StartService) -> None:
    first = start_service()
    svc = start_service(wait=False, ZDD_PORT=str(first.port))
    assert svc.wait_exit(timeout=10) == 1
    line = svc.wait_line("zdd-service error")
    assert f"address=127.0.0.1:{first.port}" in line
    assert not any("listening" in line for line in svc.lines)
    assert first.get("/health")[0] == 200


def test_port_zero_reports_the_bound_port(start_service: StartService) -> None:
    admin_port = free_port()
    svc = start_service(ZDD_PORT="0", ZDD_ADMIN_PORT=str(admin_port))
    line = svc.wait_line("zdd-service listening")
    m = re.search(r"public=127\.0\.0\.1:(\d+) admin=127\.0\.0\.1:(\d+)", line)
    assert m, line
    port = int(m.group(1))
    assert port != 0 and int(m.group(2)) == admin_port
    assert request("127.0.0.1", port, "/health")[0] == 200
    assert request("127.0.0.1", admin_port, "/admin/stats")[0] == 200


@pytest.mark.parametrize("admin", ["0", ""])
def test_no_admin_listener_unless_given_a_port(start_service: StartService, admin: str) -> None:
    """The plain contract: $PORT and /health; the admin port exists only when lb-drain asks."""
    port = free_port()
    svc = start_service(ZDD_PORT="", PORT=str(port), ZDD_ADMIN_PORT=admin)
    line = svc.wait_line("zdd-service listening")
    assert f"public=127.0.0.1:{port} admin=none " in line
    assert svc.port == port and svc.admin_port is None
    assert request("127.0.0.1", port, "/health")[0] == 200
    assert request("127.0.0.1", port, "/")[0] == 200


def test_zdd_port_wins_over_port(start_service: StartService) -> None:
    svc = start_service(PORT=str(free_port()))
    assert svc.port != int(svc.env["PORT"])
    assert svc.get("/health")[0] == 200 and not port_open("127.0.0.1", int(svc.env["PORT"]))


def test_no_admin_switch_refuses_an_admin_port(start_service: StartService) -> None:
    """ZDD_NO_ADMIN=1 (the sandbox's `plain` version): no admin listener even when asked."""
    svc = start_service(ZDD_NO_ADMIN="1")
    asked = int(svc.env["ZDD_ADMIN_PORT"])
    assert "admin=none " in svc.wait_line("zdd-service listening")
    assert not port_open("127.0.0.1", asked)
    assert svc.get("/health")[0] == 200


def test_help_and_stray_arguments() -> None:
    import subprocess

    from service_testkit import PYTHON, service_env

    ok = subprocess.run([PYTHON, "-m", "zdd_service", "--help"], env=service_env(),
                        capture_output=True, text=True, timeout=30)
    assert ok.returncode == 0 and "ZDD_GRACE_SECONDS" in ok.stdout
    bad = subprocess.run([PYTHON, "-m", "zdd_service", "--port", "80"], env=service_env(),
                         capture_output=True, text=True, timeout=30)
    assert bad.returncode == 2
    assert bad.stderr.startswith("zdd-service: error: unexpected arguments ['--port', '80']")
