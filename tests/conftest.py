"""Shared fixtures (keep this small; areas put theirs in tests/<area>/conftest.py).

`secret_service`: a real freedesktop Secret Service (gnome-keyring-daemon) on a private D-Bus
session bus, with a throwaway HOME/XDG dirs, started once per test session. Tests that use it get
the environment pointed at it (`keyring_env`) and an empty "zdd-tui" keyring service.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass

import keyring
import keyring.backend
import keyring.core
import keyring.errors
import pytest
import tiers

# A session bus without service directories: nothing gets D-Bus-activated behind our back, so
# the only processes are the two we start (and end) ourselves.
_BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"""


@dataclass
class SecretServiceProcess:
    env: dict[str, str]  # the variables a process needs to reach this Secret Service
    bus_pid: int
    keyring_pid: int


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def _wait_for_secret_service(address: str, proc: subprocess.Popen, timeout: float = 10.0) -> None:
    from jeepney import DBusAddress, new_method_call
    from jeepney.io.blocking import open_dbus_connection

    bus = DBusAddress("/org/freedesktop/DBus", bus_name="org.freedesktop.DBus", interface="org.freedesktop.DBus")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"gnome-keyring-daemon exited with {proc.returncode}")
        with open_dbus_connection(address) as conn:
            reply = conn.send_and_get_reply(new_method_call(bus, "NameHasOwner", "s", ("org.freedesktop.secrets",)))
            if reply.body[0]:
                return
        time.sleep(0.05)
    raise RuntimeError("gnome-keyring-daemon did not register org.freedesktop.secrets in time")


@pytest.fixture(scope="session")
def secret_service(tmp_path_factory) -> SecretServiceProcess:
    tools = tiers.require_tools("dbus-daemon", "gnome-keyring-daemon", why="a real Secret Service",
                                apt="dbus gnome-keyring")
    root = tmp_path_factory.mktemp("secret-service")
    dirs = {name: root / name for name in ("home", "data", "config", "cache", "runtime")}
    for d in dirs.values():
        d.mkdir(mode=0o700)
    socket = root / "bus.sock"
    conf = root / "bus.conf"
    conf.write_text(_BUS_CONFIG.format(socket=socket))
    env = {
        "HOME": str(dirs["home"]),
        "XDG_DATA_HOME": str(dirs["data"]),
        "XDG_CONFIG_HOME": str(dirs["config"]),
        "XDG_CACHE_HOME": str(dirs["cache"]),
        "XDG_RUNTIME_DIR": str(dirs["runtime"]),
        "DBUS_SESSION_BUS_ADDRESS": f"unix:path={socket}",
    }
    base = {k: v for k, v in os.environ.items()
            if k not in ("DIGITALOCEAN_TOKEN", "ZDD_SSH_PRIVATE_KEY", "PYTHON_KEYRING_BACKEND")}
    bus = subprocess.Popen(
        [tools["dbus-daemon"], f"--config-file={conf}", "--nofork", "--print-address=1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**base, **env}, text=True,
    )
    daemon = None
    try:
        bus.stdout.readline()  # printed once the socket listens
        if bus.poll() is not None:
            raise RuntimeError(f"dbus-daemon exited: {bus.stderr.read()}")
        daemon = subprocess.Popen(
            [tools["gnome-keyring-daemon"], "--unlock", "--components=secrets", "--foreground"],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**base, **env},
        )
        # --unlock reads the login keyring's password from stdin (it creates the keyring with it).
        daemon.stdin.write(b"throwaway-test-password")
        daemon.stdin.close()
        _wait_for_secret_service(env["DBUS_SESSION_BUS_ADDRESS"], daemon)
        yield SecretServiceProcess(env=env, bus_pid=bus.pid, keyring_pid=daemon.pid)
    finally:
        if daemon is not None:
            _stop(daemon)
        _stop(bus)
        for stream in (bus.stdout, bus.stderr):
            stream.close()


@pytest.fixture
def keyring_env(secret_service, monkeypatch) -> dict[str, str]:
    """This test's environment points at the private Secret Service; the zdd-tui items start empty."""
    for key, value in secret_service.env.items():
        monkeypatch.setenv(key, value)
    for key in ("DIGITALOCEAN_TOKEN", "ZDD_SSH_PRIVATE_KEY", "PYTHON_KEYRING_BACKEND"):
        monkeypatch.delenv(key, raising=False)
    _clear_zdd_items(secret_service.env["DBUS_SESSION_BUS_ADDRESS"])
    # keyring finds the viable backends once per process and keeps the one it chose: find them
    # again in this environment, so what earlier tests saw (no D-Bus yet) or set cannot stand in
    # for the Secret Service.
    previous = keyring.get_keyring()
    keyring.backend.get_all_keyring.reset()
    keyring.core.init_backend()
    yield dict(os.environ)
    _clear_zdd_items(secret_service.env["DBUS_SESSION_BUS_ADDRESS"])
    keyring.set_keyring(previous)


def _clear_zdd_items(address: str) -> None:
    import secretstorage
    from jeepney.io.blocking import open_dbus_connection

    with open_dbus_connection(address) as conn:
        for item in secretstorage.search_items(conn, {"service": "zdd-tui"}):
            item.delete()


class MemoryKeyring(keyring.backend.KeyringBackend):
    """A real keyring backend object kept in memory, so tests can see what was stored."""

    priority = 1
    # Never chosen by keyring's own backend detection (which sees every subclass): it is set
    # explicitly by the fixture below and must not become the process's default elsewhere.
    viable = False

    def __init__(self):
        super().__init__()
        self.items: dict[tuple[str, str], str] = {}

    def get_password(self, service, username):
        return self.items.get((service, username))

    def set_password(self, service, username, password):
        self.items[(service, username)] = password

    def delete_password(self, service, username):
        if self.items.pop((service, username), None) is None:
            raise keyring.errors.PasswordDeleteError("not found")


@pytest.fixture
def memkeyring(monkeypatch):
    monkeypatch.delenv("DIGITALOCEAN_TOKEN", raising=False)
    monkeypatch.delenv("ZDD_SSH_PRIVATE_KEY", raising=False)
    old = keyring.get_keyring()
    kr = MemoryKeyring()
    keyring.set_keyring(kr)
    yield kr
    keyring.set_keyring(old)


@pytest.fixture(autouse=True)
def _outside_github_actions(monkeypatch):
    """The suite's expectations of headless output hold wherever it runs: in GitHub Actions the
    output gains groups and a step summary (tests/test_ci_github.py turns that on itself)."""
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
