"""The behaviour switches (ZDD_* set at start) and the container health probe."""

from __future__ import annotations

import subprocess
import time

import pytest

from service_testkit import PYTHON, StartService, service_env


def test_crash_on_start_exits_3_before_listening(start_service: StartService) -> None:
    svc = start_service(wait=False, ZDD_CRASH_ON_START="1")
    assert svc.wait_exit(timeout=15) == 3
    assert svc.lines[0].startswith("zdd-service starting")
    assert svc.lines[-1].startswith("zdd-service crashed reason=ZDD_CRASH_ON_START")
    assert not any(" listening " in line for line in svc.lines)


def test_crash_on_start_zero_starts_normally(start_service: StartService) -> None:
    svc = start_service(ZDD_CRASH_ON_START="0", ZDD_FAIL_HEALTH="")
    assert svc.get("/health")[0] == 200


@pytest.mark.slow
def test_start_delay_answers_starting_then_ok(start_service: StartService) -> None:
    delay = 3.0  # long enough that the first check surely comes before it ends
    spawned = time.monotonic()
    svc = start_service(ZDD_START_DELAY_SECONDS=str(delay))
    assert svc.get("/health")[:2] == (503, {"status": "starting"})
    # It listens and serves traffic; only the health answer waits.
    assert svc.get("/")[0] == 200
    stats = svc.stats()
    assert stats["healthy"] is False and stats["draining"] is False
    while True:
        status, body, _ = svc.get("/health")
        if status == 200:
            break
        assert body == {"status": "starting"}
        assert time.monotonic() - spawned < delay + 20, "never became healthy"
        time.sleep(0.1)
    assert time.monotonic() - spawned >= delay
    assert body == {"status": "ok"}
    assert svc.stats()["healthy"] is True
    # The load balancer saw failures, then a success.
    checker = svc.stats()["health_checkers"][0]
    assert checker["consecutive_ok"] == 1 and checker["consecutive_fail"] == 0


def test_fail_health_always_503_failing(start_service: StartService) -> None:
    svc = start_service(ZDD_FAIL_HEALTH="1")
    for _ in range(5):
        assert svc.get("/health")[:2] == (503, {"status": "failing"})
    assert svc.get("/")[0] == 200
    stats = svc.stats()
    assert stats["healthy"] is False
    assert stats["health_checkers"][0]["consecutive_fail"] == 5
    svc.admin("/admin/drain", method="POST")
    assert svc.get("/health")[1] == {"status": "draining"}
    svc.admin("/admin/undrain", method="POST")
    assert svc.get("/health")[:2] == (503, {"status": "failing"})


def test_latency_applies_to_get_root(start_service: StartService) -> None:
    svc = start_service(ZDD_LATENCY_MS="400")
    started = time.monotonic()
    assert svc.get("/")[0] == 200
    assert time.monotonic() - started >= 0.4
    assert svc.stats()["served"] == 1


def run_probe(**env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-m", "zdd_service.healthcheck"],
        env=service_env(**env),
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_container_healthcheck_probe(start_service: StartService) -> None:
    # The image's HEALTHCHECK command, run as docker would (same environment as the service).
    svc = start_service(ZDD_HOST="0.0.0.0")
    ok = run_probe(ZDD_PORT=str(svc.port))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.strip() == '200 {"status":"ok"}'
    # A marked probe: not a load-balancer check.
    assert svc.stats()["health_checkers"] == []

    svc.admin("/admin/drain", method="POST")
    draining = run_probe(ZDD_PORT=str(svc.port))
    assert draining.returncode == 1
    assert draining.stdout.strip() == '503 {"status":"draining"}'

    svc.signal()
    assert svc.wait_exit(timeout=15) == 0
    gone = run_probe(ZDD_PORT=str(svc.port))
    assert gone.returncode == 1 and gone.stdout.startswith("unhealthy:")


def test_container_healthcheck_follows_a_specific_host(start_service: StartService) -> None:
    svc = start_service(ZDD_HOST="127.0.0.5")
    probe = run_probe(ZDD_HOST="127.0.0.5", ZDD_PORT=str(svc.port))
    assert probe.returncode == 0, probe.stdout + probe.stderr
