"""The engine's `Cloud.lb_detach/lb_attach` over the DigitalOcean client (cloud/adapter.py), against
the in-process sandbox API: the LB setup creates follows the fleet's tag, so a droplet leaves it
with the tag and comes back with it (its id is kept while it is not listed under the tag)."""

from __future__ import annotations

import pytest

from zdd_tui.cloud.adapter import DOCloud
from zdd_tui.cloud.client import DOClient
from zdd_tui.cloud.errors import CloudError
from zdd_tui.cloud.models import HealthCheck
from zdd_tui.config import Config
from zdd_tui.sandbox.api import SandboxAPI

TOKEN = "dop_v1_membership0123456789abcdef"


@pytest.fixture
async def do(tmp_path):
    api = SandboxAPI(tmp_path / "sandbox", TOKEN, activation_delay=0)
    await api.start()
    try:
        async with DOClient(api.url, TOKEN, retry_backoff=0.01, recheck_delay=0.05) as client:
            yield client
    finally:
        await api.stop()


async def test_detach_and_attach_a_droplet_of_a_tag_based_lb(do):
    config = Config()
    tag = config.droplets.tag
    await do.create_droplets(["app-1", "app-2"], region="nyc3", size="s-1vcpu-1gb", image="debian-12-x64",
                             tags=[tag])
    cloud = DOCloud(do, config)
    with pytest.raises(CloudError, match="no load balancer named"):
        await cloud.lb_detach("app-1")
    await do.create_load_balancer(config.load_balancer.name, region="nyc3", tag=tag, entry_port=80, target_port=8080,
                                  health_check=HealthCheck("http", 8080, "/health", 3, 3, 2, 2))

    await cloud.lb_detach("app-1")
    assert [d.name for d in await do.list_droplets(tag)] == ["app-2"]  # the LB targets its tag
    await cloud.lb_attach("app-1")
    assert sorted(d.name for d in await do.list_droplets(tag)) == ["app-1", "app-2"]
    with pytest.raises(CloudError, match="no droplet named app-9"):
        await cloud.lb_detach("app-9")
