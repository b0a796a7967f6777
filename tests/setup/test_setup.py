"""The setup steps against the sandbox DO API: exactly once, idempotent, resumable, priced right."""

from __future__ import annotations

import json

import asyncssh
import pytest

from zdd_tui.cloud.client import DOClient
from zdd_tui.cloud.errors import CloudError
from zdd_tui.config import LoadBalancerConfig, RegistryConfig
from zdd_tui.errors import RefusedError, UsageError
from zdd_tui.sandbox.state import REGISTRY_TIERS, SIZES
from zdd_tui.setup.events import PreviewShown, StepError
from zdd_tui.setup.steps import LB_NODE_MONTHLY_USD, STEP_IDS, Setup, validate_registry_name

TOKEN = "sandbox-test-token"  # the do_api fixture's token


async def _inventory(api_url: str, cfg):
    async with DOClient(api_url, TOKEN) as c:
        droplets = await c.list_droplets()
        lbs = await c.list_load_balancers()
        reg = await c.get_registry()
        keys = await c.list_ssh_keys()
    return droplets, lbs, reg, keys


def _posts(api) -> int:
    return sum(n for route, n in api.by_route.items() if route.startswith(("POST", "PUT", "DELETE")))


async def _run(cfg, events, **kw):
    async with Setup(cfg, token=TOKEN, emit=events.append, poll_interval=0.05, wait_timeout=30, **kw) as s:
        return await s.run(confirm=lambda p: True)


async def test_full_run_creates_one_of_each_and_second_run_nothing(do_api, memkeyring, cfg_for):
    cfg = cfg_for(do_api.url)
    events: list = []
    done = await _run(cfg, events)
    assert [d.step for d in done] == list(STEP_IDS)
    assert {d.step: d.status for d in done} == {
        "token": "exists",
        "ssh-key": "created",
        "droplets": "created",
        "load-balancer": "created",
        "registry": "created",
        "bootstrap": "not-applicable",
    }
    droplets, lbs, reg, keys = await _inventory(do_api.url, cfg)
    assert sorted(d.name for d in droplets) == ["web-1", "web-2"]
    assert all(d.status == "active" and "shop-web" in d.tags for d in droplets)
    assert len(lbs) == 1 and lbs[0].tag == "shop-web" and lbs[0].status == "active"
    assert lbs[0].health_check.path == "/health" and lbs[0].forwarding_rules[0].target_port == cfg.service.port
    assert reg is not None and reg.name == cfg.registry.name
    assert len(keys) == 1
    # The private key is in the keyring (and only there); the account has its public half.
    stored = memkeyring.items[("zdd-tui", "test:ssh-key")]
    pub = " ".join(asyncssh.import_private_key(stored).export_public_key("openssh").decode().split()[:2])
    assert " ".join(keys[0].public_key.split()[:2]) == pub
    # The sandbox step says why SSH bootstrap does not apply.
    boot = done[-1]
    assert "not applicable in the sandbox" in boot.detail
    # Each step showed its preview before it was applied.
    kinds = [e.kind for e in events]
    assert kinds.index("preview") < kinds.index("step-done")

    writes = _posts(do_api)
    events2: list = []
    done2 = await _run(cfg, events2)
    assert {d.step: d.status for d in done2} == {
        "token": "exists",
        "ssh-key": "exists",
        "droplets": "exists",
        "load-balancer": "exists",
        "registry": "exists",
        "bootstrap": "not-applicable",
    }
    assert _posts(do_api) == writes  # not a single write the second time
    previews = [e.preview for e in events2 if isinstance(e, PreviewShown)]
    assert all(p.monthly_usd == 0 for p in previews)
    assert [p.step for p in previews if p.creates and p.step != "token"] == []
    d2, lbs2, reg2, keys2 = await _inventory(do_api.url, cfg)
    assert len(d2) == 2 and len(lbs2) == 1 and len(keys2) == 1 and reg2.name == reg.name


async def test_interrupted_run_resumes(do_api, memkeyring, cfg_for):
    cfg = cfg_for(do_api.url)
    # The load balancer create fails (as if the run were cut off there).
    do_api.inject_fault(r"^/v2/load_balancers$", 422, method="POST", count=1)
    events: list = []
    with pytest.raises(CloudError):
        await _run(cfg, events)
    failed = [e for e in events if isinstance(e, StepError)]
    assert [f.step for f in failed] == ["load-balancer"]
    droplets, lbs, reg, keys = await _inventory(do_api.url, cfg)
    assert len(droplets) == 2 and lbs == [] and reg is None and len(keys) == 1

    events = []
    done = await _run(cfg, events)
    assert {d.step: d.status for d in done} == {
        "token": "exists",
        "ssh-key": "exists",
        "droplets": "exists",
        "load-balancer": "created",
        "registry": "created",
        "bootstrap": "not-applicable",
    }
    droplets, lbs, reg, keys = await _inventory(do_api.url, cfg)
    assert len(droplets) == 2 and len(lbs) == 1 and reg is not None and len(keys) == 1


async def test_ssh_key_stored_but_not_uploaded_resumes_with_the_same_key(do_api, memkeyring, cfg_for):
    cfg = cfg_for(do_api.url)
    do_api.inject_fault(r"^/v2/account/keys$", 422, method="POST", count=1)
    with pytest.raises(CloudError):
        async with Setup(cfg, token=TOKEN, poll_interval=0.05) as s:
            await s.apply("ssh-key")
    first = memkeyring.items[("zdd-tui", "test:ssh-key")]
    async with Setup(cfg, token=TOKEN, poll_interval=0.05) as s:
        done = await s.apply("ssh-key")
    assert done.status == "created"
    assert memkeyring.items[("zdd-tui", "test:ssh-key")] == first  # not regenerated
    _, _, _, keys = await _inventory(do_api.url, cfg)
    assert len(keys) == 1


async def test_rejected_token_stores_nothing(do_api, memkeyring, cfg_for):
    cfg = cfg_for(do_api.url, sandbox=False)
    events: list = []
    with pytest.raises(UsageError, match="rejected the token"):
        async with Setup(cfg, token="wrong-token", emit=events.append) as s:
            await s.apply("token")
    assert memkeyring.items == {}
    assert [e.step for e in events if isinstance(e, StepError)] == ["token"]
    # The same step with the right token stores it (so the check above can fail).
    async with Setup(cfg, token=TOKEN) as s:
        done = await s.apply("token")
    assert "stored in the keyring" in done.detail
    # stored bound to the API it was checked against, the only one it is then sent to
    assert json.loads(memkeyring.items[("zdd-tui", "test:do-token")]) == {"token": TOKEN, "api_url": do_api.url}


@pytest.mark.parametrize("size,tier,units", [("s-2vcpu-2gb", "basic", 2), ("s-1vcpu-512mb-10gb", "professional", 1)])
async def test_cost_matches_size_and_tier(do_api, memkeyring, size, tier, units, cfg_for):
    from zdd_tui.config import DropletsConfig

    cfg = cfg_for(
        do_api.url,
        droplets=DropletsConfig(tag="shop-web", names=("a-1", "a-2", "a-3"), size=size),
        load_balancer=LoadBalancerConfig(name="shop-lb", size_unit=units),
        registry=RegistryConfig(name="shop-reg", tier=tier),
    )
    async with Setup(cfg, token=TOKEN) as s:
        pd = await s.preview("droplets")
        plb = await s.preview("load-balancer")
        preg = await s.preview("registry")
    assert pd.monthly_usd == pytest.approx(3 * SIZES[size][4])
    assert len(pd.creates) == 3 and size in pd.cost_detail
    assert plb.monthly_usd == pytest.approx(units * LB_NODE_MONTHLY_USD)
    price = next(t["monthly_price_in_cents"] for t in REGISTRY_TIERS if t["slug"] == tier) / 100
    assert preg.monthly_usd == pytest.approx(price) and tier in preg.cost_detail


async def test_preview_counts_only_missing_droplets(do_api, memkeyring, cfg_for):
    cfg = cfg_for(do_api.url)
    async with Setup(cfg, token=TOKEN, poll_interval=0.05) as s:
        await s.apply("ssh-key")
        key = s._ssh_key
        async with DOClient(do_api.url, TOKEN) as c:
            await c.create_droplets(["web-1"], region="nyc3", size="s-1vcpu-1gb", image="debian-12-x64",
                                    ssh_key_ids=[key.id], tags=["shop-web"])
        p = await s.preview("droplets")
        assert p.monthly_usd == pytest.approx(SIZES["s-1vcpu-1gb"][4])
        assert len(p.creates) == 1 and "web-2" in p.creates[0]
        done = await s.apply("droplets")
    assert done.created == ("droplet web-2",)
    droplets, *_ = await _inventory(do_api.url, cfg)
    assert sorted(d.name for d in droplets) == ["web-1", "web-2"]


async def test_bad_input_changes_nothing(do_api, memkeyring, cfg_for):
    for bad in ("Shop", "-x", "a" * 64, "a_b", ""):
        with pytest.raises(UsageError):
            validate_registry_name(bad)
    assert validate_registry_name("a" * 63) == "a" * 63
    cfg = cfg_for(do_api.url, registry=RegistryConfig(name="Bad_Name"))
    async with Setup(cfg, token=TOKEN) as s:
        with pytest.raises(UsageError, match="registry name"):
            await s.apply("registry")
    cfg = cfg_for(do_api.url, registry=RegistryConfig(name="ok-name", tier="platinum"))
    async with Setup(cfg, token=TOKEN) as s:
        with pytest.raises(UsageError, match="tier 'platinum'"):
            await s.apply("registry")
    from zdd_tui.config import DropletsConfig

    cfg = cfg_for(do_api.url, droplets=DropletsConfig(size="s-999"))
    async with Setup(cfg, token=TOKEN) as s:
        with pytest.raises(UsageError, match="size 's-999'"):
            await s.apply("droplets")
    assert _posts(do_api) == 0


async def test_not_confirmed_stops_before_changes(do_api, memkeyring, cfg_for):
    cfg = cfg_for(do_api.url)
    async with Setup(cfg, token=TOKEN) as s:
        with pytest.raises(RefusedError, match="not confirmed"):
            await s.run(confirm=lambda p: p.step == "token")
    assert _posts(do_api) == 0 and memkeyring.items == {}


async def test_unknown_only_step(do_api, memkeyring, cfg_for):
    async with Setup(cfg_for(do_api.url), token=TOKEN) as s:
        with pytest.raises(UsageError, match="unknown setup step"):
            await s.run(only="dns")
