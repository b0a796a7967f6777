"""Setup tests run against the in-process sandbox DO API, with an in-memory keyring."""

from __future__ import annotations

import pytest

from zdd_tui.config import Config, DigitalOceanConfig, DropletsConfig, SandboxConfig

TOKEN = "sandbox-test-token"


@pytest.fixture
async def do_api(monkeypatch):
    from zdd_tui.sandbox.api import SandboxAPI

    api = SandboxAPI(None, TOKEN, activation_delay=0.2)
    await api.start()
    # The tests type tokens in: the operator's environment says this API may receive them.
    monkeypatch.setenv("ZDD_API_URL", api.url)
    yield api
    await api.stop()


def make_config(api_url: str, *, sandbox: bool = True, **over) -> Config:
    kw = {
        "app": "shop",
        "context": "test",
        "runtime": "sandbox" if sandbox else "ssh",
        "digitalocean": DigitalOceanConfig(api_url=api_url, region="nyc3"),
        "droplets": DropletsConfig(tag="shop-web", names=("web-1", "web-2"), size="s-1vcpu-1gb"),
    }
    if sandbox:
        kw["sandbox"] = SandboxConfig(state_dir="/nonexistent-sandbox-dir")
    kw.update(over)
    return Config(**kw)


@pytest.fixture
def cfg_for():
    """make_config as a fixture (test modules here are not a package)."""
    return make_config
