"""The setup wizard screen (`s`) on zdd_tui.setup.steps.Setup, against the in-process sandbox DO
API with an in-memory keyring (as tests/setup does): the cost preview shows the API's own prices,
and applying the load-balancer and registry steps through the screen creates exactly one of each."""

from __future__ import annotations

import pytest

from zdd_tui.cloud.client import DOClient
from zdd_tui.config import Config, DigitalOceanConfig, DropletsConfig, RegistryConfig, SandboxConfig
from zdd_tui.setup.steps import LB_NODE_MONTHLY_USD
from zdd_tui.ui.app import ZddApp
from zdd_tui.ui.screens.confirm import ConfirmScreen
from zdd_tui.ui.screens.setup import SetupScreen
from zdd_tui.ui.source import FleetSource

from .conftest import project_on, until
from .screentext import screen_text

SIZE = (160, 70)
TOKEN = "setup-screen-test-token"


@pytest.fixture
async def do_api():
    from zdd_tui.sandbox.api import SandboxAPI

    api = SandboxAPI(None, TOKEN, activation_delay=0.2)
    await api.start()
    try:
        yield api
    finally:
        await api.stop()


def _log_text(screen) -> str:
    log = screen.query_one("#setup-log")
    return "\n".join("".join(seg.text for seg in strip) for strip in log.lines)


async def _finished(pilot, screen, n: int) -> None:
    await until(pilot, lambda: _log_text(screen).count("setup finished") + _log_text(screen).count("✖ ") >= n,
                30, "the step")


async def test_setup_screen_previews_api_prices_and_applies_lb_and_registry_once(do_api, memkeyring):
    config = Config(
        app="shop",
        context="test",
        runtime="sandbox",
        digitalocean=DigitalOceanConfig(api_url=do_api.url, region="nyc3"),
        droplets=DropletsConfig(tag="shop-web", names=("web-1", "web-2"), size="s-1vcpu-1gb"),
        registry=RegistryConfig(name="shop-registry", tier="basic"),
        sandbox=SandboxConfig(state_dir="/nonexistent-sandbox-dir"),
    )
    client = DOClient(do_api.url, TOKEN)
    await client.__aenter__()
    source = FleetSource(project_on(config, client), label="sandbox API (test)")
    try:
        size_price = (await client.sizes())["s-1vcpu-1gb"]
        tier_price = next(t.monthly_price_usd for t in await client.registry_options() if t.slug == "basic")
        assert size_price > 0 and tier_price > 0
        app = ZddApp(source, poll="once")
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause()
            await pilot.press("s")
            await pilot.pause()
            screen = app.screen
            assert isinstance(screen, SetupScreen)

            # p: the preview, with the API's prices.
            await pilot.press("p")
            await until(pilot, lambda: "Added monthly cost in total" in screen_text(app), 20, "the cost preview")
            text = screen_text(app)
            droplets = round(2 * size_price, 2)
            lb = round(LB_NODE_MONTHLY_USD * config.load_balancer.size_unit, 2)
            assert f"+${droplets:.2f}/month" in text and f"2 x s-1vcpu-1gb at ${size_price:.2f}/month" in text
            assert f"+${lb:.2f}/month" in text
            assert f"+${tier_price:.2f}/month" in text and f"tier basic at ${tier_price:.2f}/month" in text
            assert f"Added monthly cost in total: ${droplets + lb + tier_price:.2f}" in text
            assert f"+ load balancer {config.load_balancer.name} in nyc3 for tag shop-web" in text
            assert "+ registry shop-registry (tier basic" in text

            # 4: the load-balancer step alone, confirmed in a dialog that names what and what it costs.
            await pilot.press("4")
            await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), 15, "the LB confirmation")
            dialog = screen_text(app)
            assert "Setup: Load balancer?" in dialog and f"Adds ${lb:.2f}/month" in dialog
            await pilot.press("y")
            await _finished(pilot, screen, 1)
            assert "load-balancer created" in _log_text(screen), _log_text(screen)

            # 5: the registry step alone.
            await pilot.press("5")
            await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), 15, "the registry confirmation")
            dialog = screen_text(app)
            assert "Setup: Container registry?" in dialog and f"Adds ${tier_price:.2f}/month" in dialog
            await pilot.press("y")
            await _finished(pilot, screen, 2)
            assert "registry created" in _log_text(screen), _log_text(screen)

            # Again: nothing to create, so no question, and nothing is created twice.
            await pilot.press("4")
            await _finished(pilot, screen, 3)
            await pilot.press("5")
            await _finished(pilot, screen, 4)
            assert not isinstance(app.screen, ConfirmScreen)
            log = _log_text(screen)
            assert "load-balancer exists" in log and "registry exists" in log and "✖" not in log, log

        lbs = await client.list_load_balancers()
        assert [(x.name, x.tag) for x in lbs] == [(config.load_balancer.name, "shop-web")]
        reg = await client.get_registry()
        assert reg is not None and reg.name == "shop-registry"
        assert len(do_api.state.data["load_balancers"]) == 1
    finally:
        await source.close()
