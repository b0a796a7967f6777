"""Setup tests run against the in-process sandbox DO API, with an in-memory keyring."""

from __future__ import annotations

import keyring
import keyring.backend
import keyring.errors
import pytest

from zdd_tui.config import Config, DigitalOceanConfig, DropletsConfig, SandboxConfig

TOKEN = "sandbox-test-token"


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


@pytest.fixture
async def do_api():
    from zdd_tui.sandbox.api import SandboxAPI

    api = SandboxAPI(None, TOKEN, activation_delay=0.2)
    await api.start()
    yield api
    await api.stop()


def make_config(api_url: str, *, sandbox: bool = True, **over) -> Config:
    kw = dict(
        app="shop",
        context="test",
        runtime="sandbox" if sandbox else "ssh",
        digitalocean=DigitalOceanConfig(api_url=api_url, region="nyc3"),
        droplets=DropletsConfig(tag="shop-web", names=("web-1", "web-2"), size="s-1vcpu-1gb"),
    )
    if sandbox:
        kw["sandbox"] = SandboxConfig(state_dir="/nonexistent-sandbox-dir")
    kw.update(over)
    return Config(**kw)


@pytest.fixture
def cfg_for():
    """make_config as a fixture (test modules here are not a package)."""
    return make_config
