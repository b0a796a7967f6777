"""Setup steps against DigitalOcean behaviours the sandbox imitates: an errored droplet create, a
size not offered in the region, an errored load balancer, registry refusals and several
registries, a token without a scope."""

from __future__ import annotations

import time

import pytest

from zdd_tui.cloud.errors import CloudError
from zdd_tui.config import RegistryConfig
from zdd_tui.errors import UsageError, ZddError
from zdd_tui.setup.steps import Setup

TOKEN = "sandbox-test-token"  # the do_api fixture's token


def _requests(api, method: str, path: str) -> int:
    return sum(1 for m, p, _q, _s in api.request_log if m == method and p == path)


def _setup(cfg, **kw) -> Setup:
    return Setup(cfg, token=TOKEN, poll_interval=0.05, wait_timeout=kw.pop("wait_timeout", 30), **kw)


async def test_an_errored_droplet_create_is_reported_at_once(do_api, memkeyring, cfg_for):
    do_api.imitate.failing_creates = 1
    cfg = cfg_for(do_api.url)
    async with _setup(cfg, wait_timeout=60) as s:
        await s.apply("ssh-key")
        started = time.monotonic()
        with pytest.raises(ZddError) as e:
            await s.apply("droplets")
    assert time.monotonic() - started < 10  # not the 60 s wait for "active"
    assert "web-1" in e.value.message and "errored" in e.value.message


async def test_a_size_not_offered_in_the_region_is_refused_before_creating(do_api, memkeyring, cfg_for):
    do_api.imitate.size_regions = {"s-1vcpu-1gb": ["sfo3", "ams3"]}
    cfg = cfg_for(do_api.url)
    async with _setup(cfg) as s:
        await s.apply("ssh-key")
        with pytest.raises(UsageError) as e:
            await s.preview("droplets")
        assert "nyc3" in e.value.message and "s-1vcpu-1gb" in e.value.message
        with pytest.raises(UsageError):
            await s.apply("droplets")
    assert _requests(do_api, "POST", "/v2/droplets") == 0
    assert do_api.state.droplets() == []


async def test_an_errored_load_balancer_is_reported(do_api, memkeyring, cfg_for):
    do_api.imitate.errored_load_balancers = True
    cfg = cfg_for(do_api.url)
    async with _setup(cfg) as s:
        with pytest.raises(ZddError) as e:
            await s.apply("load-balancer")
    assert "errored" in e.value.message


async def test_registry_step_with_a_404_list_and_a_taken_name(do_api, memkeyring, cfg_for):
    do_api.imitate.registry_list_404 = True
    do_api.imitate.taken_registry_names = {"shop-images"}
    cfg = cfg_for(do_api.url, registry=RegistryConfig(name="shop-images", tier="basic"))
    async with _setup(cfg) as s:
        preview = await s.preview("registry")  # the 404 list means "none yet"
        assert preview.creates
        with pytest.raises(CloudError) as e:
            await s.apply("registry")
    assert e.value.status == 409 and "registry.name" in (e.value.hint or "")
    # Checked with validate-name first: no create was sent.
    assert _requests(do_api, "POST", "/v2/registries/validate-name") == 1
    assert _requests(do_api, "POST", "/v2/registries") == 0


async def test_registry_step_uses_the_configured_one_among_several(do_api, memkeyring, cfg_for):
    do_api.imitate.professional = True
    do_api.state.create_registry("team-a", "professional")
    do_api.state.create_registry("shop-images", "professional", several=True)
    cfg = cfg_for(do_api.url, registry=RegistryConfig(name="shop-images", tier="professional"))
    async with _setup(cfg) as s:
        preview = await s.preview("registry")
        assert not preview.creates and preview.nothing_to_do
        done = await s.apply("registry")
    assert done.status == "exists"
    # And a new one next to them, as the Professional plan allows.
    cfg2 = cfg_for(do_api.url, registry=RegistryConfig(name="shop-two", tier="professional"))
    async with _setup(cfg2) as s:
        done = await s.apply("registry")
    assert done.status == "created"
    assert [r["name"] for r in do_api.state.registries()] == ["team-a", "shop-images", "shop-two"]


async def test_registry_step_on_a_plan_with_one_registry_names_it(do_api, memkeyring, cfg_for):
    do_api.state.create_registry("team-a", "basic")
    cfg = cfg_for(do_api.url, registry=RegistryConfig(name="shop-images", tier="basic"))
    async with _setup(cfg) as s:
        preview = await s.preview("registry")
        assert any("team-a" in n for n in preview.notes)
        with pytest.raises(ZddError) as e:
            await s.apply("registry")
    assert "registry.name: team-a" in (e.value.hint or "")
    assert _requests(do_api, "POST", "/v2/registries") == 0


async def test_registry_region_must_be_one_digitalocean_offers(do_api, memkeyring, cfg_for):
    cfg = cfg_for(do_api.url, registry=RegistryConfig(name="shop-images", tier="basic", region="tor1"))
    async with _setup(cfg) as s:
        with pytest.raises(UsageError) as e:
            await s.apply("registry")
    assert "tor1" in e.value.message and "fra1" in e.value.message
    assert _requests(do_api, "POST", "/v2/registries") == 0


async def test_token_without_a_scope_is_reported_as_403(do_api, memkeyring, cfg_for):
    do_api.imitate.missing_scopes = {"account:read"}
    cfg = cfg_for(do_api.url)
    async with _setup(cfg) as s:
        with pytest.raises(UsageError) as e:
            await s.apply("token")
    assert "403" in e.value.message and "401" not in e.value.message
    assert "account:read" in (e.value.hint or "")
