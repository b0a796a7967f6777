"""New objects as DigitalOcean shows them still validate against its spec: a droplet that is
`new` without `networks.v4`, one that is `active` a moment before its address, and a load
balancer that is `new` with `ip: ""`, in every answer that carries them (create, get, list)."""

from __future__ import annotations

import json
import time

from test_sandbox_contract import validate

from zdd_tui.cloud.client import DOClient
from zdd_tui.cloud.models import HealthCheck


async def test_new_droplets_and_load_balancers_validate(recorded_api, openapi):
    api = recorded_api
    api.state.activation_delay = 60  # everything created here stays new until moved on below
    async with DOClient(api.url, api.test_token) as do:
        [d] = await do.create_droplets(["app-1"], region="nyc3", size="s-1vcpu-1gb", image="debian-12-x64",
                                       tags=["zdd-app"])
        got = await do.get_droplet(d.id)
        assert (got.status, got.public_ipv4, got.private_ipv4) == ("new", None, None)
        assert [x.public_ipv4 for x in await do.list_droplets("zdd-app")] == [None]

        lb = await do.create_load_balancer("zdd-app-lb", region="nyc3", tag="zdd-app", entry_port=80,
                                           target_port=8080, health_check=HealthCheck("http", 8080, "/health",
                                                                                      10, 5, 3, 5))
        got_lb = await do.get_load_balancer(lb.id)
        assert (got_lb.status, got_lb.ip) == ("new", None)
        await do.list_load_balancers()

        # Active, but the address comes a moment later.
        stored = api.state.droplet(d.id)
        stored["_sandbox"]["active_at"] = time.time()
        stored["_sandbox"]["networks_at"] = time.time() + 60
        got = await do.get_droplet(d.id)
        assert (got.status, got.public_ipv4) == ("active", None)

        # Then the address, and the LB's.
        stored["_sandbox"]["networks_at"] = time.time()
        api.state.load_balancer(lb.id)["_active_at"] = time.time()
        got = await do.get_droplet(d.id)
        got_lb = await do.get_load_balancer(lb.id)
        assert got.status == "active" and got.public_ipv4
        assert got_lb.status == "active" and got_lb.ip

    exchanges = [ex for ex in api.exchanges if ex.path.startswith("/v2/")]
    problems = [p for ex in exchanges for p in validate(openapi, ex)]
    assert not problems, "\n".join(problems)
    # DigitalOcean's own shapes for "no address yet", in the raw answers.
    bodies = [json.loads(ex.body) for ex in exchanges if ex.body]
    assert any(b.get("droplet", {}).get("networks") == {"v4": [], "v6": []} for b in bodies)
    assert any(b.get("load_balancer", {}).get("ip") == "" and b["load_balancer"]["status"] == "new" for b in bodies)
