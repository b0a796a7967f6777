"""DOClient against the in-process sandbox API, through its real transports (httpx reads, pydo
writes) and real HTTP on 127.0.0.1."""

from __future__ import annotations

import json
import logging
import time

import pytest

from zdd_tui.cloud.client import DOClient
from zdd_tui.cloud.errors import (
    CloudError,
    NotFoundError,
    RateLimitedError,
    UnauthorizedError,
    UnreachableError,
)
from zdd_tui.cloud.models import HealthCheck
from zdd_tui.errors import ZddError
from zdd_tui.sandbox.api import SandboxAPI

HC = HealthCheck("http", 8080, "/health", 10, 5, 3, 5)


def count(api: SandboxAPI, method: str, path: str) -> int:
    return sum(1 for m, p, _q, _s in api.request_log if m == method and p == path)


def seed(api: SandboxAPI, n: int, tag: str = "zdd-app", prefix: str = "app") -> None:
    for i in range(n):
        api.state.create_droplet(
            f"{prefix}-{i + 1}", tags=[tag], public_ipv4=f"127.0.{2 + i // 250}.{1 + i % 250}", save=False
        )
    api.state.save()


async def test_lists_every_page_beyond_200(sandbox, do):
    seed(sandbox, 205)
    seed(sandbox, 3, tag="other", prefix="x")
    before = do.requests_made
    droplets = await do.list_droplets("zdd-app")
    assert len(droplets) == 205
    assert len({d.id for d in droplets}) == 205
    assert {d.name for d in droplets} == {f"app-{i}" for i in range(1, 206)}
    # Two pages of 200, not 11 of 20.
    assert do.requests_made - before == 2
    queries = [q for m, p, q, _s in sandbox.request_log if m == "GET" and p == "/v2/droplets"]
    assert "per_page=200" in queries[0] and "page=1" in queries[0]
    assert "page=2" in queries[1]
    assert droplets[0].public_ipv4 == "127.0.2.1"
    assert len(await do.list_droplets()) == 208


async def test_not_found_bodies_become_typed_errors(sandbox, do):
    # Reads (httpx) and writes (pydo, which returns rather than raises many 404 bodies) alike.
    with pytest.raises(NotFoundError) as e:
        await do.get_droplet(12345)
    err = e.value
    assert err.status == 404 and err.do_id == "not_found"
    assert "could not be found" in str(err)
    last_404 = [s for _m, p, _q, s in sandbox.request_log if p == "/v2/droplets/12345"]
    assert last_404 == [404]
    assert err.request_id and err.request_id in str(err)
    assert err.hint and "hint:" in str(err)
    assert isinstance(err, ZddError) and err.exit_code == 1

    with pytest.raises(NotFoundError):
        await do.get_load_balancer("4de7ac8b-495b-4884-9a69-1050c6793cd6")
    await do.create_registry("zdd-registry")
    with pytest.raises(NotFoundError):
        await do.delete_tag("zdd-registry", "app", "sha-nope")
    with pytest.raises(NotFoundError):
        await do.delete_droplet(999)
    await do.delete_droplet(999, missing_ok=True)
    assert await do.get_registry("other") is None


async def test_wrong_token_is_unauthorized_and_never_shown(sandbox, caplog):
    secret = "dop_v1_wrongwrongwrong_0123456789"
    caplog.set_level(logging.DEBUG)
    async with DOClient(sandbox.url, secret) as bad:
        with pytest.raises(UnauthorizedError) as e:
            await bad.list_droplets("zdd-app")
        assert secret not in repr(bad)
    err = e.value
    assert err.status == 401
    assert "Unable to authenticate you" in str(err)
    assert "zdd-tui login" in err.hint
    for text in (str(err), repr(err), err.message, err.hint, caplog.text):
        assert secret not in text
    assert sandbox.stats["by_status"].get("401") == 1


async def test_injected_429_waits_retry_after_then_succeeds(sandbox, do):
    seed(sandbox, 2)
    sandbox.inject_fault(r"^/v2/droplets$", 429, method="GET", retry_after=1)
    t0 = time.monotonic()
    droplets = await do.list_droplets("zdd-app")
    elapsed = time.monotonic() - t0
    assert len(droplets) == 2
    assert elapsed >= 1.0  # it waited as told
    assert do.waited_seconds == 1.0
    assert [s for m, p, _q, s in sandbox.request_log if p == "/v2/droplets"] == [429, 200]
    assert do.rate_limit is not None and do.rate_limit.limit == 5000


async def test_429_beyond_max_wait_raises_rate_limited(sandbox, token):
    sandbox.inject_fault(r"^/v2/account$", 429, retry_after=30, count=5)
    async with DOClient(sandbox.url, token, max_retry_wait=5) as do:
        with pytest.raises(RateLimitedError) as e:
            await do.account()
    assert e.value.status == 429 and e.value.retry_after == 30
    assert "rate limit" in e.value.hint
    assert count(sandbox, "GET", "/v2/account") == 1  # did not wait 30 s


async def test_sandbox_rate_limit_headers_and_429(tmp_path, token):
    api = SandboxAPI(None, token, rate_per_minute=3, rate_per_hour=100)
    async with api:
        async with DOClient(api.url, token, max_retry_wait=0) as do:
            await do.account()
            assert do.rate_limit.limit == 100 and do.rate_limit.remaining == 99
            assert do.rate_limit.reset_epoch >= int(time.time()) + 3590
            await do.account()
            await do.account()
            assert do.rate_limit.remaining == 97
            with pytest.raises(RateLimitedError) as e:
                await do.account()
            assert 1 <= e.value.retry_after <= 60
            # Sandbox endpoints are not DigitalOcean's and are not limited.
            assert api.stats["rate_limited"] == 1
            assert do.requests_made == 4


async def test_injected_500_after_create_makes_no_second_droplet(sandbox, do):
    # The droplet is created but the answer is a 500: the adapter must re-list, not re-send.
    sandbox.inject_fault(r"^/v2/droplets$", 500, method="POST", after=True)
    droplets = await do.create_droplets(
        ["app-1"], region="nyc3", size="s-1vcpu-1gb", image="debian-12-x64", tags=["zdd-app"]
    )
    assert [d.name for d in droplets] == ["app-1"]
    assert count(sandbox, "POST", "/v2/droplets") == 1
    assert [d["name"] for d in sandbox.state.droplets()] == ["app-1"]
    # And again: it exists, so nothing is sent at all.
    again = await do.create_droplets(["app-1"], region="nyc3", size="s-1vcpu-1gb", image="debian-12-x64",
                                     tags=["zdd-app"])
    assert again[0].id == droplets[0].id
    assert count(sandbox, "POST", "/v2/droplets") == 1


async def test_injected_500_before_create_sends_once_more(sandbox, do):
    sandbox.inject_fault(r"^/v2/droplets$", 500, method="POST")
    droplets = await do.create_droplets(
        ["app-1", "app-2"], region="nyc3", size="s-1vcpu-1gb", image="debian-12-x64", tags=["zdd-app"]
    )
    assert [d.name for d in droplets] == ["app-1", "app-2"]
    assert count(sandbox, "POST", "/v2/droplets") == 2
    assert sorted(d["name"] for d in sandbox.state.droplets()) == ["app-1", "app-2"]


async def test_persistent_500_on_create_raises_after_two_sends(sandbox, do):
    sandbox.inject_fault(r"^/v2/droplets$", 500, method="POST", count=10)
    with pytest.raises(CloudError) as e:
        await do.create_droplets(["app-1"], region="nyc3", size="s-1vcpu-1gb", image="debian-12-x64", tags=["zdd-app"])
    assert e.value.status == 500
    assert count(sandbox, "POST", "/v2/droplets") == 2
    assert sandbox.state.droplets() == []


async def test_reads_retry_5xx_a_few_times(sandbox, do):
    sandbox.inject_fault(r"^/v2/account$", 503, count=2)
    assert (await do.account()).status == "active"
    assert count(sandbox, "GET", "/v2/account") == 3
    sandbox.inject_fault(r"^/v2/account$", 500, count=10)
    with pytest.raises(CloudError) as e:
        await do.account()
    assert e.value.status == 500 and "internal error" in e.value.hint


async def test_token_never_in_errors_or_logs(sandbox, token, caplog):
    caplog.set_level(logging.DEBUG)
    errors: list[BaseException] = []
    sandbox.inject_fault(r"^/v2/sizes$", 500, count=10)
    sandbox.inject_fault(r"^/v2/account$", 429, retry_after=100)
    async with DOClient(sandbox.url, token, max_retry_wait=1, retry_backoff=0.01) as do:
        assert token not in repr(do)
        await do.create_tag("written-to-state")
        for call in (do.sizes(), do.account(), do.get_droplet(1), do.get_load_balancer("x")):
            try:
                await call
            except CloudError as e:
                errors.append(e)
    assert token not in repr(sandbox) and token not in json.dumps(sandbox.stats)
    url = sandbox.url
    await sandbox.stop()
    assert token not in (sandbox.state.path.read_text())
    async with DOClient(url, token, max_retries=0) as do:
        with pytest.raises(UnreachableError) as e:
            await do.account()
        errors.append(e.value)
    assert [type(e).__name__ for e in errors] == [
        "CloudError", "RateLimitedError", "NotFoundError", "NotFoundError", "UnreachableError",
    ]
    for e in errors:
        for text in (str(e), repr(e), e.hint or "", repr(e.__dict__)):
            assert token not in text
    assert token not in caplog.text


def test_plain_http_only_to_loopback():
    with pytest.raises(CloudError, match="plain http"):
        DOClient("http://203.0.113.5:8080", "t")
    DOClient("http://127.0.0.1:1", "t")
    DOClient("http://localhost:1", "t")
    DOClient("http://10.9.0.1:1", "t", allow_insecure=True)
    DOClient("https://api.digitalocean.com", "t")
    with pytest.raises(UnauthorizedError):
        DOClient("https://api.digitalocean.com", "")


async def test_droplet_becomes_active_and_action_completes(tmp_path, token):
    async with SandboxAPI(None, token, activation_delay=0.3) as api:
        async with DOClient(api.url, token) as do:
            [d] = await do.create_droplets(["app-1"], region="nyc3", size="s-1vcpu-1gb", image="debian-12-x64",
                                           tags=["t"])
            assert d.status == "new" and d.public_ipv4 is None  # DigitalOcean: no address while new
            action_id = api.state.droplet(d.id)["_sandbox"]["create_action_id"]
            assert (await do.get_action(action_id)).status == "in-progress"
            action = await do.wait_action(action_id, timeout=5, interval=0.1)
            assert action.status == "completed" and action.type == "create"
            d = await do.get_droplet(d.id)
            assert d.status == "active" and d.public_ipv4 == "127.0.1.2"


async def test_load_balancer_create_is_idempotent_and_put_replaces(sandbox, do):
    lb = await do.create_load_balancer("zdd-app-lb", region="nyc3", tag="zdd-app", entry_port=80, target_port=8080,
                                       health_check=HC)
    again = await do.create_load_balancer("zdd-app-lb", region="nyc3", tag="zdd-app", entry_port=80, target_port=8080,
                                          health_check=HC)
    assert again.id == lb.id and count(sandbox, "POST", "/v2/load_balancers") == 1
    assert lb.tag == "zdd-app" and lb.droplet_ids == () and lb.ip is None  # no address while new
    new_hc = HealthCheck("http", 8080, "/ready", 3, 3, 2, 2)
    updated = await do.update_load_balancer(lb, health_check=new_hc)
    assert updated.health_check == new_hc
    assert updated.forwarding_rules == lb.forwarding_rules and updated.tag == "zdd-app"
    assert (await do.find_load_balancer("zdd-app-lb")).health_check == new_hc
    assert await do.find_load_balancer("nope") is None
    with pytest.raises(CloudError) as e:
        await do.update_load_balancer(lb, health_check=HealthCheck("http", 8080, "/", 3, 3, 1, 2))
    assert e.value.status == 422 and "unhealthy_threshold" in str(e.value)


async def test_lb_health_metric(sandbox, do):
    droplets = await do.create_droplets(["a", "b", "c"], region="nyc3", size="s-1vcpu-1gb", image="x", tags=["zdd-app"])
    lb = await do.create_load_balancer("lb", region="nyc3", tag="zdd-app", entry_port=80, target_port=8080,
                                       health_check=HC)
    assert await do.lb_droplet_health(lb.id) == {}
    seen = []

    async def provider(lb_id):
        seen.append(lb_id)
        return {droplets[0].id: True, droplets[1].id: False}

    sandbox.lb_health_provider = provider
    assert await do.lb_droplet_health(lb.id) == {droplets[0].id: True, droplets[1].id: False}
    assert seen == [lb.id]
    with pytest.raises(NotFoundError):
        await do.lb_droplet_health("4de7ac8b-495b-4884-9a69-1050c6793cd6")


async def test_registry_tags_credentials_and_prices(sandbox, do):
    assert await do.get_registry() is None
    reg = await do.create_registry("zdd-registry", "basic", "fra1")
    assert (reg.name, reg.tier, reg.region) == ("zdd-registry", "basic", "fra1")
    assert (await do.create_registry("zdd-registry")).name == "zdd-registry"
    assert count(sandbox, "POST", "/v2/registries") == 1
    sandbox.state.put_registry_tag("app", "sha-aaaaaaa", updated_at="2026-01-01T00:00:00Z")
    sandbox.state.put_registry_tag("app", "sha-bbbbbbb", behaviour="unhealthy", updated_at="2026-01-03T00:00:00Z")
    sandbox.state.put_registry_tag("app", "latest", updated_at="2026-01-02T00:00:00Z")
    for i in range(250):  # more than one page of tags
        sandbox.state.data["repositories"]["app"][f"old-{i:03d}"] = {
            "tag": f"old-{i:03d}", "manifest_digest": "sha256:" + "0" * 64, "compressed_size_bytes": 1,
            "size_bytes": 2, "updated_at": "2025-01-01T00:00:00Z", "_behaviour": "ok",
        }
    tags = await do.list_tags("zdd-registry", "app")
    assert len(tags) == 253
    assert [t.tag for t in tags[:3]] == ["sha-bbbbbbb", "latest", "sha-aaaaaaa"]  # newest first
    assert tags[0].manifest_digest.startswith("sha256:") and tags[0].compressed_size_bytes > 0
    assert tags[0].updated_at.year == 2026
    # The sandbox-only behaviour never shows in DigitalOcean-shaped answers.
    raw = [q for m, p, q, _ in sandbox.request_log if p.endswith("/tags")]
    assert raw and "behaviour" not in str(tags)
    repos = await do.list_repositories("zdd-registry")
    assert [(r.name, r.tag_count, r.latest_tags) for r in repos] == [("app", 253, ("sha-bbbbbbb",))]
    await do.delete_tag("zdd-registry", "app", "sha-aaaaaaa")
    assert "sha-aaaaaaa" not in {t.tag for t in await do.list_tags("zdd-registry", "app")}

    creds = await do.docker_credentials("zdd-registry", read_write=False, expiry_seconds=120)
    assert list(creds.auths) == ["registry.digitalocean.com"] and creds.auths["registry.digitalocean.com"]["auth"]
    assert creds.read_write is False and creds.expires_in_seconds == 120
    assert "auth" not in repr(creds)
    rw = await do.docker_credentials("zdd-registry", read_write=True, expiry_seconds=60)
    assert rw.read_write is True
    assert [(c["read_write"], c["expiry_seconds"]) for c in sandbox.issued_credentials] == [(False, 120), (True, 60)]

    sizes = await do.sizes()
    assert sizes["s-1vcpu-1gb"] == 6.0
    tiers = {t.slug: t.monthly_price_usd for t in await do.registry_options()}
    assert tiers == {"starter": 0.0, "basic": 5.0, "professional": 20.0}


async def test_ssh_keys_tags_and_account(sandbox, do):
    pub = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl zdd@host"
    key = await do.create_ssh_key("zdd", pub)
    assert key.fingerprint.count(":") == 15
    assert (await do.create_ssh_key("zdd-again", pub + "\n")).id == key.id  # same key material: no second key
    assert [k.id for k in await do.list_ssh_keys()] == [key.id]
    [d] = await do.create_droplets(["app-1"], region="nyc3", size="s-1vcpu-1gb", image="x", ssh_key_ids=[key.id])
    await do.create_tag("web")
    await do.tag_resources("web", [d.id])
    assert (await do.get_droplet(d.id)).tags == ("web",)
    assert [x.name for x in await do.list_droplets("web")] == ["app-1"]
    found = await do.find_droplets_by_name("app-1")
    assert [x.id for x in found] == [d.id]
    acct = await do.account()
    assert acct.status == "active" and acct.droplet_limit > 0
