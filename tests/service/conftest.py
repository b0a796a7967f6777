"""Fixtures for the sample service tests (helpers live in service_testkit)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from service_testkit import ServiceProcess, StartService, free_port, service_env


@pytest.fixture
def start_service() -> Iterator[StartService]:
    """Start services (public on 127.0.0.1 unless told); stops any still running at the end."""
    started: list[ServiceProcess] = []

    def start(wait: bool = True, **env: str) -> ServiceProcess:
        env.setdefault("ZDD_HOST", "127.0.0.1")
        # Public port 0: the service binds a free port itself and prints it (no port picked here
        # that another process could take before the service binds it).
        env.setdefault("ZDD_PORT", "0")
        # The admin listener runs only when given a port (0 or unset: none), as lb-drain gives it.
        env.setdefault("ZDD_ADMIN_PORT", str(free_port(env.get("ZDD_ADMIN_HOST", "127.0.0.1"))))
        svc = ServiceProcess(service_env(**env))
        started.append(svc)
        if wait:
            svc.wait_listening()
        return svc

    yield start
    for svc in started:
        if svc.proc.poll() is None:
            svc.proc.kill()  # by PID, only the processes this fixture started
        svc.wait_exit(timeout=10)
        for stream in (svc.proc.stdout, svc.proc.stderr):
            if stream:
                stream.close()
