"""Setup's waits go through DigitalOcean's intermediate states and say so: droplets `new` without
addresses, a droplet `active` a moment before its address, a load balancer `new` with no IP."""

from __future__ import annotations

import time

from zdd_tui.cloud.client import DOClient
from zdd_tui.setup.events import StepProgress
from zdd_tui.setup.steps import Setup

TOKEN = "sandbox-test-token"  # the do_api fixture's token


async def test_droplets_active_before_their_address_and_a_new_lb(do_api, memkeyring, cfg_for):
    cfg = cfg_for(do_api.url)

    def address_later(d):  # active after the fixture's 0.2 s, the address 1 s after that
        d["_sandbox"]["networks_at"] = time.time() + 1.2

    do_api.on_droplet_created = address_later
    events: list = []
    async with Setup(cfg, token=TOKEN, emit=events.append, poll_interval=0.05, wait_timeout=30) as setup:
        for step in ("ssh-key", "droplets", "load-balancer"):
            done = await setup.apply(step)
            assert done.status == "created", done
    said = [e.message for e in events if isinstance(e, StepProgress)]
    assert any("waiting for web-1 (new)" in m for m in said), said
    assert any("web-1 (active, no address yet)" in m for m in said), said
    assert any(m.endswith("(no IP yet)") and " new " in m for m in said), said
    assert said[-1].endswith(" at 127.0.0.1")  # the LB's last word: active, with its address
    droplets_done = next(e for e in events if getattr(e, "step", None) == "droplets" and hasattr(e, "detail"))
    assert droplets_done.detail == "active: web-1 127.0.1.2, web-2 127.0.1.3"
    async with DOClient(do_api.url, TOKEN) as c:
        assert all(d.status == "active" and d.public_ipv4 for d in await c.list_droplets("shop-web"))
