"""The sandbox DigitalOcean API's own behaviour: persistence, hooks, faults, stats, registry backends."""

from __future__ import annotations

import hashlib
import json

import aiohttp
import pytest
from aiohttp import web

from zdd_tui.cloud.adapter import DOCloud
from zdd_tui.cloud.client import DOClient
from zdd_tui.cloud.errors import NotFoundError
from zdd_tui.cloud.models import HealthCheck
from zdd_tui.config import Config
from zdd_tui.rollout.interfaces import LBSettings
from zdd_tui.sandbox.api import SandboxAPI
from zdd_tui.sandbox.registry import DistributionRegistry

HC = HealthCheck("http", 8080, "/health", 10, 5, 3, 5)


def auth(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


async def test_state_survives_a_restart(tmp_path, token):
    state_dir = tmp_path / "sb"
    async with SandboxAPI(state_dir, token, activation_delay=0) as api:
        async with DOClient(api.url, token) as do:
            ds = await do.create_droplets(["app-1", "app-2"], region="nyc3", size="s-1vcpu-1gb", image="x",
                                          tags=["zdd-app"])
            lb = await do.create_load_balancer("lb", region="nyc3", tag="zdd-app", entry_port=80, target_port=8080,
                                               health_check=HC)
            await do.create_registry("zdd-registry")
            api.state.put_registry_tag("app", "sha-1234567", behaviour="slow")
    assert (state_dir / "api-state.json").exists()
    async with SandboxAPI(state_dir, token, activation_delay=0) as api2:
        async with DOClient(api2.url, token) as do:
            again = await do.list_droplets("zdd-app")
            assert [(d.id, d.name, d.public_ipv4) for d in again] == [
                (d.id, d.name, f"127.0.1.{i}") for i, d in enumerate(ds, 2)]
            assert (await do.get_load_balancer(lb.id)).name == "lb"
            assert [t.tag for t in await do.list_tags("zdd-registry", "app")] == ["sha-1234567"]
            assert api2.state.registry_tags("app")[0]["_behaviour"] == "slow"
            [d3] = await do.create_droplets(["app-3"], region="nyc3", size="s-1vcpu-1gb", image="x", tags=["zdd-app"])
            assert d3.id == ds[-1].id + 1  # ids continue, never reused
            assert (await do.get_droplet(d3.id)).public_ipv4 == "127.0.1.4"


async def test_hooks_addresses_and_deletes(tmp_path, token):
    created, deleted, lb_events = [], [], []
    api = SandboxAPI(None, token, activation_delay=0,
                     address_allocator=lambda d: (f"127.0.9.{d['id'] % 100}", "10.0.0.5"))

    async def on_created(d):
        created.append(d["name"])
        d["_sandbox"]["process"] = 4242  # private data survives, never served
        return {"locked": False}

    api.on_droplet_created = on_created
    api.on_droplet_deleted = lambda d: deleted.append(d["name"])
    api.on_load_balancer_changed = lambda lb, lb_id: lb_events.append((lb_id, lb and lb["health_check"]["path"]))

    async def agent(request):
        return web.json_response({"ok": True})

    api.add_routes([web.get("/sandbox/agent/ping", agent)])
    async with api:
        async with DOClient(api.url, token) as do:
            [d] = await do.create_droplets(["app-1"], region="nyc3", size="s-1vcpu-1gb", image="x", tags=["zdd-app"])
            assert created == ["app-1"]
            assert (d.public_ipv4, d.private_ipv4) == (None, None)  # none while new
            d = await do.get_droplet(d.id)
            assert (d.public_ipv4, d.private_ipv4) == (f"127.0.9.{d.id % 100}", "10.0.0.5")
            assert api.state.droplet(d.id)["_sandbox"]["process"] == 4242
            lb = await do.create_load_balancer("lb", region="nyc3", tag="zdd-app", entry_port=80, target_port=8080,
                                               health_check=HC)
            await do.update_load_balancer(lb, health_check=HealthCheck("http", 8080, "/ready", 3, 3, 2, 2))
            await do.delete_droplet(d.id)
            assert deleted == ["app-1"]
        assert lb_events == [(lb.id, "/health"), (lb.id, "/ready")]
        async with aiohttp.ClientSession() as s:
            async with s.get(f"{api.url}/v2/droplets/{d.id}", headers=auth(token)) as r:
                assert r.status == 404
            async with s.get(f"{api.url}/sandbox/agent/ping", headers=auth(token)) as r:
                assert r.status == 200
            async with s.get(f"{api.url}/sandbox/agent/ping", headers=auth("nope")) as r:
                assert r.status == 401  # extra routes share the bearer auth
            async with s.post(f"{api.url}/v2/droplets", headers=auth(token),
                              json={"name": "app-2", "size": "s-1vcpu-1gb", "image": "x"}) as r:
                body = await r.json()
                assert r.status == 202 and "_sandbox" not in body["droplet"] and "process" not in json.dumps(body)
                assert body["links"]["actions"][0]["rel"] == "create"


async def test_faults_and_stats_over_http(tmp_path, token):
    async with SandboxAPI(None, token) as api:
        async with aiohttp.ClientSession(headers=auth(token)) as s:
            async with s.post(f"{api.url}/sandbox/faults",
                              json={"path_regex": "^/v2/account$", "status": 503, "count": 2, "retry_after": 7}) as r:
                assert r.status == 201
            async with s.post(f"{api.url}/sandbox/faults", json={"status": 500}) as r:
                assert r.status == 422  # no path_regex
            statuses = []
            for _ in range(3):
                async with s.get(f"{api.url}/v2/account") as r:
                    statuses.append(r.status)
                    if r.status == 503:
                        assert r.headers["retry-after"] == "7"
                        body = await r.json()
                        assert body["id"] == "service_unavailable" and body["request_id"] == r.headers["x-request-id"]
            assert statuses == [503, 503, 200]
            async with s.get(f"{api.url}/sandbox/faults") as r:
                assert (await r.json())["faults"] == []
            async with s.get(f"{api.url}/v2/droplets/77") as r:
                assert r.status == 404
            async with s.get(f"{api.url}/sandbox/stats") as r:
                stats = await r.json()
        assert stats["by_route"]["GET /v2/account"] == 3
        assert stats["by_route"]["GET /v2/droplets/{droplet_id}"] == 1
        assert stats["by_status"]["503"] == 2 and stats["faults_injected"] == 2
        assert stats["requests_total"] == 7  # the stats request itself is counted after it answers


async def test_droplet_create_validation(tmp_path, token):
    async with SandboxAPI(None, token) as api:
        async with aiohttp.ClientSession(headers=auth(token)) as s:
            bad = [
                {"name": "a", "image": "x"},  # no size
                {"name": "bad name!", "size": "s-1vcpu-1gb", "image": "x"},
                {"names": [f"n{i}" for i in range(11)], "size": "s-1vcpu-1gb", "image": "x"},
                {"name": "a", "size": "s-99", "image": "x"},
                {"name": "a", "size": "s-1vcpu-1gb", "image": "x", "region": "mars1"},
            ]
            for body in bad:
                async with s.post(f"{api.url}/v2/droplets", json=body) as r:
                    assert r.status == 422, body
                    assert (await r.json())["id"] == "unprocessable_entity"
            async with s.post(f"{api.url}/v2/droplets", data=b"{not json",
                              headers={"Content-Type": "application/json"}) as r:
                assert r.status == 400
        assert api.state.droplets() == []


async def test_sandbox_registry_endpoints_keep_behaviour_private(tmp_path, token):
    async with SandboxAPI(None, token) as api:
        api.state.create_registry("zdd-registry")
        async with aiohttp.ClientSession(headers=auth(token)) as s:
            async with s.post(f"{api.url}/sandbox/registry/app/tags",
                              json={"tag": "sha-feed123", "behaviour": "crash", "extra": {"version": "v3"}}) as r:
                assert r.status == 201
            async with s.post(f"{api.url}/sandbox/registry/app/tags", json={"tag": "x", "behaviour": "weird"}) as r:
                assert r.status == 422
            async with s.get(f"{api.url}/sandbox/registry/app/tags") as r:
                [tag] = (await r.json())["tags"]
                assert (tag["tag"], tag["behaviour"], tag["extra"]) == ("sha-feed123", "crash", {"version": "v3"})
            async with s.get(f"{api.url}/v2/registries/zdd-registry/repositories/app/tags") as r:
                text = await r.text()
                assert "sha-feed123" in text and "crash" not in text and "behaviour" not in text


async def test_fleet_maps_lb_health_to_names(sandbox, do):
    cfg = Config()
    fleet = DOCloud(do, cfg)
    assert await fleet.lb_settings() == LBSettings(10.0, 5.0, 3, 5)  # from the config: no LB yet
    assert await fleet.tag_exists("latest") is False  # no registry yet
    ds = await do.create_droplets(["app-1", "app-2", "app-3"], region="nyc3", size="s-1vcpu-1gb", image="x",
                                  tags=[cfg.droplets.tag])
    assert await fleet.lb_health() == {"app-1": None, "app-2": None, "app-3": None}
    lb = await do.create_load_balancer(cfg.load_balancer.name, region="nyc3", tag=cfg.droplets.tag, entry_port=80,
                                       target_port=8080, health_check=HealthCheck("http", 8080, "/health", 3, 4, 2, 6))
    sandbox.lb_health_provider = lambda lb_id: {ds[0].id: True, ds[1].id: False}
    assert await fleet.lb_settings() == LBSettings(3.0, 4.0, 2, 6)
    assert await fleet.lb_health() == {"app-1": True, "app-2": False, "app-3": None}
    await do.create_registry(cfg.registry.name)
    sandbox.state.put_registry_tag(cfg.registry.repository, "sha-abcdef0")
    assert await fleet.tag_exists("sha-abcdef0") is True
    assert await fleet.tag_exists("sha-0000000") is False
    # The LB disappears: settings fall back to the config, health to unknown.
    sandbox.state.delete_load_balancer(lb.id)
    assert await fleet.lb_settings() == LBSettings(10.0, 5.0, 3, 5)
    assert set((await fleet.lb_health()).values()) == {None}


@pytest.fixture
async def fake_distribution():
    """A minimal Distribution (registry v2) HTTP API with two tags of zdd-registry/app."""
    blobs = {}
    manifests = {}
    deleted = []

    def add(tag, created, layer_sizes):
        config = json.dumps({"created": created}).encode()
        cdig = "sha256:" + hashlib.sha256(config).hexdigest()
        blobs[cdig] = config
        manifest = json.dumps({
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {"digest": cdig, "size": len(config)},
            "layers": [{"digest": f"sha256:{i:064d}", "size": s} for i, s in enumerate(layer_sizes)],
        }).encode()
        manifests[tag] = ("sha256:" + hashlib.sha256(manifest).hexdigest(), manifest)

    add("latest", "2026-03-01T10:00:00.123456789Z", [1000, 2000])
    add("sha-1111111", "2026-02-01T10:00:00Z", [500])

    async def catalog(request):
        return web.json_response({"repositories": ["other/x", "zdd-registry/app"]})

    async def tags_list(request):
        return web.json_response({"name": "zdd-registry/app", "tags": sorted(manifests)})

    async def manifest(request):
        ref = request.match_info["ref"]
        for tag, (digest, body) in manifests.items():
            if ref in (tag, digest):
                if request.method == "DELETE":
                    deleted.append(digest)
                    del manifests[tag]
                    return web.Response(status=202)
                return web.Response(body=body, headers={
                    "Docker-Content-Digest": digest,
                    "Content-Type": "application/vnd.docker.distribution.manifest.v2+json",
                })
        return web.json_response({"errors": [{"code": "MANIFEST_UNKNOWN"}]}, status=404)

    async def blob(request):
        return web.Response(body=blobs[request.match_info["digest"]])

    @web.middleware
    async def basic_auth(request, handler):
        if request.headers.get("Authorization") != "Basic bGFiOnB3":  # lab:pw
            return web.json_response({"errors": [{"code": "UNAUTHORIZED"}]}, status=401)
        return await handler(request)

    app = web.Application(middlewares=[basic_auth])
    app.router.add_get("/v2/_catalog", catalog)
    app.router.add_get("/v2/zdd-registry/app/tags/list", tags_list)
    app.router.add_route("*", "/v2/zdd-registry/app/manifests/{ref}", manifest)
    app.router.add_get("/v2/zdd-registry/app/blobs/{digest}", blob)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}", manifests, deleted
    await runner.cleanup()


async def test_distribution_registry_backend(fake_distribution, token):
    url, manifests, deleted = fake_distribution
    backend = DistributionRegistry(url, "zdd-registry", username="lab", password="pw")
    async with SandboxAPI(None, token, registry_backend=backend) as api:
        api.state.create_registry("zdd-registry")
        assert api.registry_server == url.split("://")[1]
        async with DOClient(api.url, token) as do:
            tags = await do.list_tags("zdd-registry", "app")
            assert [t.tag for t in tags] == ["latest", "sha-1111111"]
            assert tags[0].manifest_digest == manifests["latest"][0]
            assert tags[0].compressed_size_bytes > 3000
            assert tags[0].updated_at.isoformat() == "2026-03-01T10:00:00+00:00"
            assert [r.name for r in await do.list_repositories("zdd-registry")] == ["app"]
            creds = await do.docker_credentials("zdd-registry")
            assert creds.auths == {api.registry_server: {"auth": "bGFiOnB3"}}  # lab:pw
            digest = manifests["sha-1111111"][0]
            await do.delete_tag("zdd-registry", "app", "sha-1111111")
            assert deleted == [digest]
            with pytest.raises(NotFoundError):
                await do.delete_tag("zdd-registry", "app", "sha-1111111")


def test_rate_limiter_minute_and_hour_windows():
    from zdd_tui.sandbox.api import RateLimiter

    rl = RateLimiter(per_minute=2, per_hour=3)
    t = 1_000_000.0
    assert rl.check(t)[0] and rl.check(t + 1)[0]
    allowed, headers, retry = rl.check(t + 2)
    assert not allowed and retry == 58  # the first request leaves the minute window at t+60
    # The burst limit's answer: remaining 0 with a retry-after, as DigitalOcean documents it.
    assert headers == {"ratelimit-limit": "3", "ratelimit-remaining": "0", "ratelimit-reset": str(int(t + 3600))}
    assert rl.check(t + 61)[0]  # a new minute
    allowed, headers, retry = rl.check(t + 200)
    assert not allowed and headers["ratelimit-remaining"] == "0"
    # The hourly limit's answer has no retry-after: the budget returns at ratelimit-reset.
    assert retry is None and headers["ratelimit-reset"] == str(int(t + 3600))
    assert rl.check(t + 3601)[0]
