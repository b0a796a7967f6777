"""Every sandbox API answer the adapter uses validates against DigitalOcean's OpenAPI spec.

The adapter (httpx reads, pydo writes underneath) drives the sandbox through each operation it has, plus the
errors it handles (401, 404, 422, 429, 500); every exchange is recorded and checked, requests
(what the adapter sends) and responses (what the sandbox answers), with openapi-core.
"""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp
import pytest
from openapi_core.testing import MockRequest, MockResponse

from zdd_tui.cloud.client import DOClient
from zdd_tui.cloud.errors import CloudError, ForbiddenError, NotFoundError, RateLimitedError, UnauthorizedError
from zdd_tui.cloud.models import HealthCheck

SPEC_FILE = Path(__file__).with_name("do-openapi-zdd.json")
SERVER = "https://api.digitalocean.com"  # the spec's server; paths are what matters

# (method, route) of every operation the adapter performs.
ADAPTER_OPERATIONS = {
    ("get", "/v2/account"),
    ("get", "/v2/account/keys"),
    ("post", "/v2/account/keys"),
    ("get", "/v2/actions/{action_id}"),
    ("get", "/v2/droplets"),
    ("post", "/v2/droplets"),
    ("get", "/v2/droplets/{droplet_id}"),
    ("delete", "/v2/droplets/{droplet_id}"),
    ("post", "/v2/tags"),
    ("post", "/v2/tags/{tag_id}/resources"),
    ("get", "/v2/load_balancers"),
    ("post", "/v2/load_balancers"),
    ("get", "/v2/load_balancers/{lb_id}"),
    ("put", "/v2/load_balancers/{lb_id}"),
    ("get", "/v2/monitoring/metrics/load_balancer/droplets_health_checks"),
    ("get", "/v2/registries"),
    ("post", "/v2/registries"),
    ("get", "/v2/registries/options"),
    ("post", "/v2/registries/validate-name"),
    ("get", "/v2/registries/{registry_name}/docker-credentials"),
    ("get", "/v2/registries/{registry_name}/repositoriesV2"),
    ("get", "/v2/registries/{registry_name}/repositories/{repository_name}/tags"),
    ("delete", "/v2/registries/{registry_name}/repositories/{repository_name}/tags/{repository_tag}"),
    ("get", "/v2/sizes"),
}

PUBLIC_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl zdd@test"


async def drive_adapter(api) -> None:
    TOKEN = api.test_token
    async def no_sleep(_s):
        return None

    async with DOClient(api.url, "not-the-token") as bad:
        with pytest.raises(UnauthorizedError):
            await bad.account()

    async with DOClient(api.url, TOKEN, sleep=no_sleep) as do:
        await do.account()
        await do.sizes()
        await do.registry_options()
        await do.create_ssh_key("zdd", PUBLIC_KEY)
        await do.list_ssh_keys()
        droplets = await do.create_droplets(
            ["app-1", "app-2"], region="nyc3", size="s-1vcpu-1gb", image="debian-12-x64", ssh_key_ids=[1],
            tags=["zdd-app"],
        )
        await do.create_droplets(["app-3"], region="nyc3", size="s-1vcpu-1gb", image="debian-12-x64")
        await do.find_droplets_by_name("app-3")
        await do.get_droplet(droplets[0].id)
        with pytest.raises(NotFoundError):
            await do.get_droplet(1)
        action_id = api.state.droplet(droplets[0].id)["_sandbox"]["create_action_id"]
        await do.wait_action(action_id)
        await do.create_tag("web")
        await do.tag_resources("web", [droplets[0].id])
        with pytest.raises(NotFoundError):
            await do.tag_resources("no-such-tag", [droplets[0].id])
        hc = HealthCheck("http", 8080, "/health", 10, 5, 3, 5)
        lb = await do.create_load_balancer("zdd-app-lb", region="nyc3", tag="zdd-app", entry_port=80, target_port=8080,
                                           health_check=hc)
        with pytest.raises(CloudError) as e422:
            await do.update_load_balancer(lb, health_check=HealthCheck("http", 8080, "/health", 1, 5, 3, 5))
        assert e422.value.status == 422
        # Settings made elsewhere come back in DigitalOcean's shapes and survive the PUT.
        api.state.load_balancer(lb.id).update({
            "firewall": {"deny": ["ip:198.51.100.7"], "allow": []}, "tls_cipher_policy": "STRONG",
            "vpc_uuid": "c33931f2-a26a-4e61-b85c-4e95a2ec431b", "project_id": "9cc10173-e9ea-4176-9dbc-a4cee4c4ff30",
            "sticky_sessions": {"type": "cookies", "cookie_name": "DO-LB", "cookie_ttl_seconds": 300},
        })
        lb = await do.get_load_balancer(lb.id)
        lb = await do.update_load_balancer(lb, size_unit=2)
        assert lb.raw["firewall"]["deny"] == ["ip:198.51.100.7"]
        await do.get_load_balancer(lb.id)
        with pytest.raises(NotFoundError):
            await do.get_load_balancer("7c7b4bd9-8d0d-4b1e-9a7f-000000000000")
        api.lb_health_provider = lambda lb_id: {droplets[0].id: True, droplets[1].id: False}
        assert await do.lb_droplet_health(lb.id) == {droplets[0].id: True, droplets[1].id: False}
        api.imitate.missing_scopes = {"monitoring:read"}  # a token without the scope: 403
        with pytest.raises(ForbiddenError):
            await do.lb_droplet_health(lb.id)
        api.imitate.missing_scopes = set()
        api.imitate.registry_list_404 = True  # no registry yet: 404 on the list
        assert await do.get_registry() is None
        api.imitate.taken_registry_names = {"taken"}
        with pytest.raises(CloudError) as e409:
            await do.validate_registry_name("taken")
        assert e409.value.status == 409
        with pytest.raises(CloudError) as e409:
            await do.create_registry("taken")
        assert e409.value.status == 409
        await do.validate_registry_name("zdd-registry")  # 204
        await do.create_registry("zdd-registry", "basic", "nyc3")
        with pytest.raises(CloudError) as e422:
            await do.create_registry("second-registry")  # the plan holds one
        assert e422.value.status == 422
        api.state.put_registry_tag("app", "latest")
        api.state.put_registry_tag("app", "sha-0000001", behaviour="crash")
        await do.get_registry()
        await do.list_repositories("zdd-registry")
        await do.list_tags("zdd-registry", "app")
        with pytest.raises(NotFoundError):
            await do.list_tags("zdd-registry", "nope")
        await do.docker_credentials("zdd-registry", read_write=False, expiry_seconds=300)
        await do.delete_tag("zdd-registry", "app", "sha-0000001")
        with pytest.raises(NotFoundError):
            await do.delete_tag("zdd-registry", "app", "sha-0000001")
        api.inject_fault(r"^/v2/droplets$", 429, method="GET", retry_after=0)
        api.inject_fault(r"^/v2/sizes$", 500, method="GET")
        await do.list_droplets("zdd-app")  # 429, then 200
        await do.sizes()  # 500, then 200
        per_hour = api.limiter.per_hour
        api.limiter.per_hour = len(api.limiter.hits)  # the hour's budget used up: 429 without retry-after
        with pytest.raises(RateLimitedError):
            await do.account()
        api.limiter.per_hour = per_hour
        await do.delete_droplet(droplets[1].id)
        with pytest.raises(NotFoundError):
            await do.delete_droplet(droplets[1].id)

    # Pagination links, as any client paging by hand sees them.
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as s:
        for page in (1, 2):
            async with s.get(f"{api.url}/v2/droplets", params={"per_page": "1", "page": str(page)}) as r:
                assert r.status == 200
                assert (await r.json())["meta"]["total"] == 2


def validate(openapi, ex) -> list[str]:
    problems = []
    request = MockRequest(
        SERVER,
        ex.method,
        ex.path,
        args=ex.query,
        headers={"Authorization": "Bearer x"},
        data=ex.request_body or None,
        content_type=ex.request_type if ex.request_body else "application/json",
    )
    # The spec's ssh_key_identifier is anyOf(readOnly integer, readOnly string): openapi-core can
    # neither cast a path string to it nor accept readOnly in a request, so only the answer is checked.
    quirk = ex.route == "/v2/account/keys/{ssh_key_identifier}"
    if 200 <= ex.status < 300 and not quirk:  # requests the server accepted must be valid requests
        try:
            openapi.validate_request(request)
        except Exception as e:  # noqa: BLE001 - report every problem at once
            problems.append(f"request {ex.method.upper()} {ex.path}: {e} {getattr(e, '__cause__', '')}")
    response = MockResponse(
        ex.body,
        status_code=ex.status,
        headers=ex.headers,
        content_type=(ex.headers.get("Content-Type", "application/json").split(";")[0] if ex.body
                      else "application/json"),
    )
    try:
        openapi.validate_response(request, response)
    except Exception as e:  # noqa: BLE001
        cause = e.__cause__
        detail = "; ".join(str(x).split("\n")[0] for x in getattr(cause, "schema_errors", []) or [])
        problems.append(f"response {ex.status} to {ex.method.upper()} {ex.path}: {e} {detail}")
    return problems


async def test_every_adapter_exchange_validates_against_do_spec(recorded_api, openapi):
    await drive_adapter(recorded_api)
    exchanges = [ex for ex in recorded_api.exchanges if ex.path.startswith("/v2/")]
    problems = [p for ex in exchanges for p in validate(openapi, ex)]
    assert not problems, "\n".join(problems)

    seen = {(ex.method, ex.route) for ex in exchanges}
    missing = ADAPTER_OPERATIONS - seen
    assert not missing, f"operations not exercised: {sorted(missing)}"
    statuses = {ex.status for ex in exchanges}
    assert {200, 201, 202, 204, 401, 403, 404, 409, 422, 429, 500} <= statuses, statuses
    # Both kinds of 429: the burst limit's with retry-after, the hourly limit's without.
    limited = [ex for ex in exchanges if ex.status == 429]
    assert {"retry-after" in {k.lower() for k in ex.headers} for ex in limited} == {True, False}
    # Error answers carry DO's request id in the body.
    for ex in exchanges:
        if ex.status >= 400:
            body = json.loads(ex.body)
            assert set(body) == {"id", "message", "request_id"}, body


async def test_validator_rejects_a_wrong_shape(recorded_api, openapi):
    """The check above can fail: a droplet list missing `meta` does not validate."""
    await drive_adapter(recorded_api)
    ex = next(e for e in recorded_api.exchanges if e.route == "/v2/droplets" and e.method == "get" and e.status == 200)
    body = json.loads(ex.body)
    del body["meta"]
    ex.body = json.dumps(body).encode()
    assert validate(openapi, ex)
    ex.body = json.dumps({"droplets": [{"id": "x"}], "meta": {"total": 1}}).encode()
    assert validate(openapi, ex)


OTHER_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4f raw@test"


async def drive_raw(api) -> None:
    """The DO routes the adapter does not call (the sandbox's own tools and people's scripts may)."""
    TOKEN = api.test_token
    base = api.url
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as s:

        async def call(method, path, status, **kw):
            async with s.request(method, base + path, **kw) as r:
                assert r.status == status, (method, path, r.status, await r.text())
                return await r.json() if r.content_type == "application/json" else None

        key = (await call("POST", "/v2/account/keys", 201, json={"name": "k", "public_key": OTHER_KEY}))["ssh_key"]
        await call("GET", f"/v2/account/keys/{key['id']}", 200)
        await call("GET", f"/v2/account/keys/{key['fingerprint']}", 200)
        await call("DELETE", f"/v2/account/keys/{key['id']}", 204)
        await call("GET", f"/v2/account/keys/{key['id']}", 404)
        await call("POST", "/v2/account/keys", 422, json={"name": "k", "public_key": "not a key"})
        api.imitate.keys_per_minute = 1  # DigitalOcean's own limit on listing keys (10 a minute)
        async with s.get(base + "/v2/account/keys"):
            pass  # 200, or already 429 if the adapter listed keys within the minute
        await call("GET", "/v2/account/keys", 429)
        api.imitate.keys_per_minute = 10
        api.imitate.size_regions = {"s-4vcpu-8gb": [], "s-2vcpu-4gb": ["sfo3"]}
        await call("GET", "/v2/sizes", 200)
        await call("POST", "/v2/droplets", 422, json={"name": "big", "size": "s-2vcpu-4gb", "image": "debian-12-x64"})
        api.imitate.failing_creates = 1
        failed = await call("POST", "/v2/droplets", 202, json={"name": "fails", "size": "s-1vcpu-1gb",
                                                                 "image": "debian-12-x64"})
        action = (await call("GET", f"/v2/actions/{failed['links']['actions'][0]['id']}", 200))["action"]
        assert action["status"] == "errored"
        await call("DELETE", f"/v2/droplets/{failed['droplet']['id']}", 204)
        droplet_body = {"name": "one", "size": "s-1vcpu-1gb", "image": "debian-12-x64", "tags": ["t1"]}
        d = (await call("POST", "/v2/droplets", 202, json=droplet_body))["droplet"]
        await call("GET", "/v2/actions", 200, params={"per_page": "1"})
        await call("POST", "/v2/tags", 201, json={"name": "t2"})
        await call("GET", "/v2/tags", 200)
        await call("GET", "/v2/tags/t1", 200)
        await call("GET", "/v2/tags/missing", 404)
        res = {"resources": [{"resource_id": str(d["id"]), "resource_type": "droplet"}]}
        await call("POST", "/v2/tags/t2/resources", 204, json=res)
        await call("DELETE", "/v2/tags/t2/resources", 204, json=res)
        await call("DELETE", "/v2/tags/t2", 204)
        lb_body = {
            "name": "raw-lb", "region": "nyc3", "tag": "t1",
            "forwarding_rules": [
                {"entry_protocol": "http", "entry_port": 80, "target_protocol": "http", "target_port": 8080},
            ],
        }
        lb = (await call("POST", "/v2/load_balancers", 202, json=lb_body))["load_balancer"]
        await call("POST", "/v2/load_balancers", 422, json=dict(lb_body, droplet_ids=[d["id"]]))
        await call("DELETE", f"/v2/load_balancers/{lb['id']}", 204)
        await call("DELETE", f"/v2/load_balancers/{lb['id']}", 404)
        api.imitate.errored_load_balancers = True
        bad = (await call("POST", "/v2/load_balancers", 202, json=dict(lb_body, name="bad-lb")))["load_balancer"]
        assert (await call("GET", f"/v2/load_balancers/{bad['id']}", 200))["load_balancer"]["status"] == "errored"
        await call("DELETE", f"/v2/load_balancers/{bad['id']}", 204)
        await call("GET", "/v2/monitoring/metrics/load_balancer/droplets_health_checks", 400,
                   params={"lb_id": lb["id"]})
        await call("GET", "/v2/registries/nothing", 404)
        await call("GET", "/v2/registries/subscription", 200)  # the adapter's registry
        await call("DELETE", "/v2/registries/zdd-registry", 204)
        await call("GET", "/v2/registries/subscription", 404)
        await call("POST", "/v2/registries", 201,
                   json={"name": "raw-reg", "subscription_tier_slug": "starter", "region": "nyc3"})
        await call("POST", "/v2/registries/validate-name", 409, json={"name": "raw-reg"})
        await call("GET", "/v2/registries/raw-reg", 200)
        await call("GET", "/v2/registries/raw-reg/docker-credentials", 200,
                   params={"read_write": "true", "expiry_seconds": "60"})
        await call("DELETE", "/v2/registries/raw-reg", 204)
        await call("DELETE", "/v2/droplets", 204, params={"tag_name": "t1"})
        await call("GET", f"/v2/droplets/{d['id']}", 404)


async def test_every_sandbox_do_route_is_in_the_spec_and_validates(recorded_api, openapi):
    await drive_adapter(recorded_api)
    await drive_raw(recorded_api)
    exchanges = [ex for ex in recorded_api.exchanges if ex.path.startswith("/v2/")]
    problems = [p for ex in exchanges for p in validate(openapi, ex)]
    assert not problems, "\n".join(problems)
    served = {
        (route.method.lower(), route.resource.canonical)
        for route in recorded_api.app.router.routes()
        if route.resource is not None and route.resource.canonical.startswith("/v2/") and route.method != "HEAD"
    }
    seen = {(ex.method, ex.route) for ex in exchanges}
    assert served - seen == set(), "sandbox DO routes never exercised"
    spec = json.loads(SPEC_FILE.read_text())
    spec_ops = {(m, p) for p, item in spec["paths"].items() for m in item if m != "parameters"}
    assert served - spec_ops == set(), "sandbox serves DO routes that are not in DigitalOcean's spec"
