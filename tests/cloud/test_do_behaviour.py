"""DigitalOcean behaviours the sandbox imitates (`api.imitate`, the rate limits), driven through the
client: the load balancer PUT, both kinds of 429, the SSH key list's own limit, a token without a
scope, registry answers, the LB health metric's real shape."""

from __future__ import annotations

import pytest

from zdd_tui.cloud.adapter import DOCloud
from zdd_tui.cloud.client import DOClient, lb_health_from
from zdd_tui.cloud.errors import CloudError, ForbiddenError, RateLimitedError
from zdd_tui.cloud.models import HealthCheck
from zdd_tui.config import Config, DropletsConfig, LoadBalancerConfig
from zdd_tui.sandbox.api import SandboxAPI

TOKEN = "dop_v1_behaviourtest0123456789"
HC = HealthCheck("http", 8080, "/health", 10, 5, 3, 5)


class FakeTime:
    """One clock for the sandbox's rate limits and the client: the client's sleeps advance it."""

    def __init__(self, now: float = 1_800_000_000.0):
        self.now = now
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@pytest.fixture
async def api(tmp_path):
    api = SandboxAPI(tmp_path / "sb", TOKEN, activation_delay=0)
    await api.start()
    yield api
    await api.stop()


def count(api: SandboxAPI, method: str, path: str) -> int:
    return sum(1 for m, p, _q, _s in api.request_log if m == method and p == path)


# ---- the load balancer PUT ---------------------------------------------------------------------


async def test_lb_update_keeps_the_settings_zdd_does_not_own(api):
    async with DOClient(api.url, TOKEN) as do:
        lb = await do.create_load_balancer("lb", region="nyc3", tag="web", entry_port=80, target_port=8080,
                                           health_check=HC)
        # Settings a user made in the control panel, straight into the account.
        stored = api.state.load_balancer(lb.id)
        user = {
            "sticky_sessions": {"type": "cookies", "cookie_name": "DO-LB", "cookie_ttl_seconds": 300},
            "redirect_http_to_https": True,
            "enable_proxy_protocol": True,
            "enable_backend_keepalive": True,
            "http_idle_timeout_seconds": 90,
            "firewall": {"deny": ["ip:198.51.100.7"], "allow": ["cidr:203.0.113.0/24"]},
            "vpc_uuid": "c33931f2-a26a-4e61-b85c-4e95a2ec431b",
            "project_id": "9cc10173-e9ea-4176-9dbc-a4cee4c4ff30",
            "tls_cipher_policy": "STRONG",
        }
        stored.update(user)
        https = {"entry_protocol": "https", "entry_port": 443, "target_protocol": "http", "target_port": 8080,
                 "certificate_id": "892071a0-bb95-49bc-8021-3afd67a210bf", "tls_passthrough": False}
        stored["forwarding_rules"].append(https)
        api.state.save()

        lb = await do.get_load_balancer(lb.id)
        new_hc = HealthCheck("http", 8080, "/ready", 5, 3, 2, 2)
        updated = await do.update_load_balancer(lb, health_check=new_hc)

    after = api.state.load_balancer(lb.id)
    assert updated.health_check == new_hc and after["health_check"]["path"] == "/ready"
    for key, value in user.items():
        assert after[key] == value, key
    assert https in after["forwarding_rules"]
    assert after["tag"] == "web"


# ---- rate limits ---------------------------------------------------------------------------------


async def test_hourly_429_waits_for_the_reset_when_it_is_near(tmp_path):
    clock = FakeTime()
    api = SandboxAPI(None, TOKEN, rate_per_hour=3)
    api.clock = clock
    await api.start()
    try:
        async with DOClient(api.url, TOKEN, clock=clock, sleep=clock.sleep, max_retry_wait=60) as do:
            for _ in range(3):
                await do.account()
            clock.now += 3590  # the first of the hour's three turns an hour old in 10 s
            before = do.requests_made
            await do.account()
            # One 429 (no retry-after), one wait until ratelimit-reset, one request that passes.
            assert do.requests_made - before == 2
            assert len(clock.slept) == 1 and 10 <= clock.slept[0] <= 12
    finally:
        await api.stop()


async def test_hourly_429_far_from_reset_stops_at_once_saying_when(tmp_path):
    clock = FakeTime()
    api = SandboxAPI(None, TOKEN, rate_per_hour=3)
    api.clock = clock
    await api.start()
    try:
        async with DOClient(api.url, TOKEN, clock=clock, sleep=clock.sleep, max_retry_wait=60) as do:
            for _ in range(3):
                await do.account()
            before = do.requests_made
            with pytest.raises(RateLimitedError) as e:
                await do.account()
            assert do.requests_made - before == 1  # not retried every second
            assert clock.slept == []
            err = e.value
            assert err.status == 429 and err.reset_epoch == 1_800_000_000 + 3600
            assert "hourly" in err.message and "until" in err.message
            assert err.retry_after is not None and err.retry_after > 3000
    finally:
        await api.stop()


async def test_burst_429_waits_retry_after(tmp_path):
    clock = FakeTime()
    api = SandboxAPI(None, TOKEN, rate_per_minute=2)
    api.clock = clock
    await api.start()
    try:
        async with DOClient(api.url, TOKEN, clock=clock, sleep=clock.sleep) as do:
            await do.account()
            await do.account()
            before = do.requests_made
            await do.account()
            assert do.requests_made - before == 2
            assert clock.slept == [60.0]
            assert do.rate_limit is not None
        assert api.by_status["429"] == 1
    finally:
        await api.stop()


async def test_ssh_key_list_has_its_own_limit_of_ten_a_minute(tmp_path):
    clock = FakeTime()
    api = SandboxAPI(None, TOKEN)  # DigitalOcean's numbers: on by default
    api.clock = clock
    await api.start()
    try:
        async with DOClient(api.url, TOKEN, clock=clock, sleep=clock.sleep) as do:
            for _ in range(10):
                await do.list_ssh_keys()
            assert clock.slept == []
            await do.list_ssh_keys()  # the 11th in the minute: 429 with retry-after, then fine
            assert len(clock.slept) == 1 and 55 <= clock.slept[0] <= 60
            await do.account()  # other routes are not limited by it
        assert count(api, "GET", "/v2/account/keys") == 12
    finally:
        await api.stop()


# ---- a token without a scope ---------------------------------------------------------------------


async def test_a_missing_scope_is_a_403_that_names_the_scopes(api):
    api.imitate.missing_scopes = {"monitoring:read"}
    async with DOClient(api.url, TOKEN) as do:
        lb = await do.create_load_balancer("lb", region="nyc3", tag="web", entry_port=80, target_port=8080,
                                           health_check=HC)
        with pytest.raises(ForbiddenError) as e:
            await do.lb_droplet_health(lb.id)
    err = e.value
    assert err.status == 403 and "403" in err.message and "401" not in err.message
    assert err.do_id == "forbidden"
    for scope in ("monitoring:read", "account:read", "sizes:read", "actions:read", "registry:update"):
        assert scope in (err.hint or "")


# ---- registries ----------------------------------------------------------------------------------


async def test_registry_list_404_means_none(api):
    api.imitate.registry_list_404 = True
    async with DOClient(api.url, TOKEN) as do:
        assert await do.get_registry() is None
        assert await do.list_registries() == []
        reg = await do.create_registry("zdd-registry", "basic")
        assert reg.name == "zdd-registry"
        assert [r.name for r in await do.list_registries()] == ["zdd-registry"]


async def test_several_registries_the_configured_one_by_name(api):
    api.imitate.professional = True
    api.state.create_registry("team-a", "professional")
    api.state.create_registry("zdd-registry", "professional", several=True)
    async with DOClient(api.url, TOKEN) as do:
        assert [r.name for r in await do.list_registries()] == ["team-a", "zdd-registry"]
        reg = await do.get_registry("zdd-registry")
        assert reg is not None and reg.name == "zdd-registry" and reg.tier == "professional"


async def test_registry_name_taken_and_already_has_one_get_precise_hints(api):
    api.imitate.taken_registry_names = {"taken"}
    async with DOClient(api.url, TOKEN) as do:
        with pytest.raises(CloudError) as e:
            await do.validate_registry_name("taken")
        assert e.value.status == 409 and "taken" in (e.value.hint or "")
        with pytest.raises(CloudError) as e:
            await do.create_registry("taken")
        assert e.value.status == 409 and "registry.name" in (e.value.hint or "")
        await do.validate_registry_name("free")  # 204
        await do.create_registry("first")
        with pytest.raises(CloudError) as e:
            await do.create_registry("second")
        assert e.value.status == 422 and "already has a container registry" in (e.value.hint or "")
    assert [r["name"] for r in api.state.registries()] == ["first"]


# ---- the LB health metric ------------------------------------------------------------------------


@pytest.mark.parametrize("shape", ["server", "server-ip", "droplet_id"])
async def test_lb_health_read_in_every_shape(api, shape):
    api.imitate.lb_health_shape = shape

    def private(d: dict) -> tuple[str, str]:
        n = len(api.state.data["droplets"]) + 1
        return f"127.0.1.{n}", f"10.10.0.{n}"

    api.state.address_allocator = private
    async with DOClient(api.url, TOKEN) as do:
        ds = await do.create_droplets(["a", "b", "c"], region="nyc3", size="s-1vcpu-1gb", image="x", tags=["web"])
        lb = await do.create_load_balancer("lb", region="nyc3", tag="web", entry_port=80, target_port=8080,
                                           health_check=HC)
        # New droplets have no address yet; reading them once they are up gives the client their
        # addresses, which the metric's `server` label may carry instead of an id.
        assert all(d.public_ipv4 for d in await do.list_droplets("web"))
        # A new LB: no series at all. Nothing is reported unhealthy.
        assert await do.lb_droplet_health(lb.id) == {}
        api.lb_health_provider = lambda _lb: {ds[0].id: True, ds[1].id: False}
        assert await do.lb_droplet_health(lb.id) == {ds[0].id: True, ds[1].id: False}
        cfg = Config(app="web", droplets=DropletsConfig(tag="web", names=("a", "b", "c")),
                     load_balancer=LoadBalancerConfig(name="lb"))
        view = await DOCloud(do, cfg).lb_health()
    assert view == {"a": True, "b": False, "c": None}


def test_lb_health_values_and_scales():
    ids = {"11": 11, "12": 12, "13": 13, "web-1": 11, "10.0.0.2": 12}.get

    def body(*series):
        return {"status": "success", "data": {"resultType": "matrix", "result": list(series)}}

    def one(labels, *values):
        return {"metric": labels, "values": [[1800000000 + i, v] for i, v in enumerate(values)]}

    # Percent: the newest sample counts; a part is a droplet changing state: unknown.
    assert lb_health_from(body(one({"server": "11"}, "0", "100"), one({"server": "12"}, "100", "0"),
                               one({"server": "13"}, "50")), ids) == {11: True, 12: False, 13: None}
    # 0/1 with the droplet id label.
    assert lb_health_from(body(one({"droplet_id": "11"}, "1"), one({"droplet_id": "12"}, "0")), ids) == {
        11: True, 12: False}
    # Named by droplet name or by address:port.
    assert lb_health_from(body(one({"server": "web-1"}, "100"), one({"server": "10.0.0.2:8080"}, "0")), ids) == {
        11: True, 12: False}
    # NaN, no values, unreadable, unknown label or droplet: unknown or left out, never unhealthy.
    assert lb_health_from(body(one({"server": "11"}, "NaN"), one({"server": "12"}), one({"server": "13"}, "x"),
                               one({"lb_id": "x"}, "0"), one({"server": "nobody"}, "0")), ids) == {
        11: None, 12: None, 13: None}
    assert lb_health_from(body(), ids) == {}
    assert lb_health_from({"status": "success", "data": {}}, ids) == {}
    assert lb_health_from(None, ids) == {}


# ---- docker credentials --------------------------------------------------------------------------


async def test_docker_credentials_really_expire(api):
    clock = FakeTime()
    api.clock = clock
    api.state.create_registry("zdd-registry")
    async with DOClient(api.url, TOKEN, clock=clock) as do:
        ro = await do.docker_credentials("zdd-registry", expiry_seconds=60)
        rw = await do.docker_credentials("zdd-registry", read_write=True, expiry_seconds=600)
        forever = await do.docker_credentials("zdd-registry", expiry_seconds=0)  # DO: 0 never expires
    auth = ro.auths["registry.digitalocean.com"]["auth"]
    rw_auth = rw.auths["registry.digitalocean.com"]["auth"]
    assert api.docker_auth_refusal(auth) is None
    assert api.docker_auth_refusal(auth, push=True) == "denied: requested access to the resource is denied"
    assert api.docker_auth_refusal(rw_auth, push=True) is None
    clock.now += 59
    assert api.docker_auth_refusal(auth) is None
    clock.now += 1
    assert api.docker_auth_refusal(auth) == "unauthorized: authentication required"
    assert api.docker_auth_refusal(rw_auth, push=True) is None
    clock.now += 540
    assert api.docker_auth_refusal(rw_auth, push=True) == "unauthorized: authentication required"
    assert api.docker_auth_refusal(forever.auths["registry.digitalocean.com"]["auth"]) is None
    assert api.docker_auth_refusal("bm90Omlzc3VlZA==") == "unauthorized: authentication required"


async def test_status_says_unknown_not_unhealthy_without_lb_data(api):
    from zdd_tui.project.status import FleetStatus, render_text

    async with DOClient(api.url, TOKEN) as do:
        ds = await do.create_droplets(["a", "b"], region="nyc3", size="s-1vcpu-1gb", image="x", tags=["web"])
        lb = await do.create_load_balancer("lb", region="nyc3", tag="web", entry_port=80, target_port=8080,
                                           health_check=HC)
        health = await do.lb_droplet_health(lb.id)  # a new LB: DigitalOcean has no series yet
    st = FleetStatus(sandbox=False, api_url=api.url, droplets=ds, load_balancer=lb, lb_health=health)
    text = render_text(st)
    assert "UNHEALTHY" not in text and text.count("LB:unknown") == 2
    assert "no data from DigitalOcean's monitoring yet" in text
    assert all(d["lb_healthy"] is None for d in st.to_dict()["droplets"])


async def test_login_check_of_a_token_without_a_scope_names_the_scopes(api):
    from zdd_tui.errors import UsageError
    from zdd_tui.project.credentials import check_token

    api.imitate.missing_scopes = {"account:read"}
    with pytest.raises(UsageError) as e:
        await check_token(api.url, TOKEN)
    assert "403" in e.value.message and "account:read" in (e.value.hint or "")
