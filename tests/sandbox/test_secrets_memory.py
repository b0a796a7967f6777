"""A sandbox host keeps a container's secrets in memory only: its records hold names and
fingerprints, and a restarted sandbox (which no longer has the values) does not restart it."""

from __future__ import annotations

import random
import socket
from pathlib import Path

from zdd_tui.sandbox.hosts import LocalHost, pid_alive
from zdd_tui.sandbox.images import SandboxImage, digest_for


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _environ(pid: int) -> bytes:
    return Path(f"/proc/{pid}/environ").read_bytes()


def _host(root, address) -> LocalHost:
    image = SandboxImage(tag="sha-1234567", behaviour="ok", version="sha-1234567",
                         digest=digest_for("sha-1234567", "ok"))
    return LocalHost("app-1", 1, address, root, service_port=_free_port(), admin_port=_free_port(),
                     lookup=lambda repo, tag: image if tag == image.tag else None)


async def test_secrets_live_in_memory_only_and_a_restart_does_not_run_without_them(tmp_path):
    address = f"127.{random.randint(1, 254)}.{random.randint(0, 255)}.{random.randint(1, 254)}"
    value = f"mem-only-{random.getrandbits(64):x}"
    host = _host(tmp_path / "h", address)
    ref = "registry.example/app/app:sha-1234567"
    await host.run(ref, {"PLAIN": "yes"}, secrets={"DB_PASSWORD": value}, secrets_label="key=abcd1234;DB_PASSWORD=0a")
    (pid,) = host.pids()
    try:
        environ = _environ(pid)
        assert f"DB_PASSWORD={value}".encode() in environ and b"PLAIN=yes" in environ
        assert host.inspect()["secrets_label"] == "key=abcd1234;DB_PASSWORD=0a"
        assert not [p for p in (tmp_path / "h").rglob("*") if p.is_file() and value.encode() in p.read_bytes()]
        await host.shutdown(5)  # the sandbox exits: the record stays, the values go with the process
        again = _host(tmp_path / "h", address)
        await again.resume()
        assert again.pids() == [] and again.inspect()["state"] == "exited"
        assert "its secrets were held in the previous sandbox process's memory only" in "\n".join(again.logs())
    finally:
        await host.stop(1)
        assert not pid_alive(pid)
