"""Helpers: the sample service as real processes on loopback.

ZDD_SERVICE_PYTHON picks the interpreter that runs the service (default: this one), so the
same tests check another aiohttp, e.g. a venv with Debian bookworm's aiohttp 3.8;
ZDD_SERVICE_SRC the directory holding the zdd_service package (default: service/).
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

SERVICE_DIR = Path(
    os.environ.get("ZDD_SERVICE_SRC") or Path(__file__).resolve().parents[2] / "service"
)
PYTHON = os.environ.get("ZDD_SERVICE_PYTHON", sys.executable)


def service_env(**overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZDD_")}
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(SERVICE_DIR), env.get("PYTHONPATH", "")) if p
    )
    env["PYTHONUNBUFFERED"] = "1"
    env.update(overrides)
    return env


def request(
    host: str,
    port: int,
    path: str,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    source: str | None = None,
    timeout: float = 10.0,
) -> tuple[int, Any, http.client.HTTPMessage]:
    """One request on a fresh connection; returns (status, parsed JSON or text, headers)."""
    conn = http.client.HTTPConnection(
        host, port, timeout=timeout, source_address=(source, 0) if source else None
    )
    try:
        conn.request(method, path, headers=headers or {})
        resp = conn.getresponse()
        raw = resp.read().decode()
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = raw
        return resp.status, body, resp.headers
    finally:
        conn.close()


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def _given_port(value: str) -> int | None:
    return int(value) if value.isdigit() and int(value) != 0 else None


def free_port(host: str = "127.0.0.1") -> int:
    """A port free on `host` now (the admin listener has no "any free port": 0 means none)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class ServiceProcess:
    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.host = env.get("ZDD_HOST", "0.0.0.0")
        self.admin_host = env.get("ZDD_ADMIN_HOST", "127.0.0.1")
        # The ports it bound, read from its "listening" line (wait_listening): port 0 lets the
        # service pick free ones itself, so no other process can take them first. A port given
        # as a number is known from the start (tests of bad values pass non-numbers: never bound).
        self.port = _given_port(env.get("ZDD_PORT", ""))
        self.admin_port = _given_port(env.get("ZDD_ADMIN_PORT", ""))
        self.lines: list[str] = []
        self.err_lines: list[str] = []
        self._changed = threading.Condition()
        self.proc = subprocess.Popen(
            [PYTHON, "-m", "zdd_service"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._readers = [
            threading.Thread(target=self._read, args=(self.proc.stdout, self.lines), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stderr, self.err_lines), daemon=True),
        ]
        for t in self._readers:
            t.start()

    def _read(self, stream: Any, into: list[str]) -> None:
        for line in stream:
            with self._changed:
                into.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_line(self, prefix: str, timeout: float = 10.0) -> str:
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self.lines:
                    if line.startswith(prefix):
                        return line
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not any(
                        t.is_alive() for t in self._readers)):
                    raise AssertionError(
                        f"no line starting {prefix!r}; stdout={self.lines} stderr={self.err_lines}"
                    )
                self._changed.wait(min(left, 0.2))

    def wait_listening(self, timeout: float = 10.0) -> str:
        """Its "listening" line, once printed; the ports it bound are read from it."""
        line = self.wait_line("zdd-service listening", timeout)
        fields = dict(f.split("=", 1) for f in line.split()[2:] if "=" in f)
        self.port = int(fields["public"].rsplit(":", 1)[1])
        self.admin_port = None if fields["admin"] == "none" else int(fields["admin"].rsplit(":", 1)[1])
        return line

    def wait_exit(self, timeout: float) -> int:
        # Popen.wait reaps our own child; /proc polling is not needed for a direct child.
        code = self.proc.wait(timeout=timeout)
        for t in self._readers:
            t.join(timeout=5)
        return code

    def signal(self, sig: int = signal.SIGTERM) -> None:
        self.proc.send_signal(sig)

    # Requests against the public and admin listeners (on the addresses tests can reach).
    @property
    def public_addr(self) -> str:
        return "127.0.0.1" if self.host == "0.0.0.0" else self.host

    def get(self, path: str, **kw: Any) -> tuple[int, Any, http.client.HTTPMessage]:
        return request(self.public_addr, self.port, path, **kw)

    def admin(self, path: str, method: str = "GET", **kw: Any) -> tuple[int, Any, Any]:
        return request(self.admin_host, self.admin_port, path, method=method, **kw)

    def stats(self) -> dict[str, Any]:
        status, body, _ = self.admin("/admin/stats")
        assert status == 200, body
        return body

    def url(self, path: str) -> str:
        return f"http://{self.public_addr}:{self.port}{path}"


StartService = Callable[..., ServiceProcess]
