"""`DOCloud`: the engine's view of the cloud (rollout.interfaces.Cloud) over the DigitalOcean client."""

from __future__ import annotations

from zdd_tui.cloud.client import DOClient
from zdd_tui.cloud.errors import NotFoundError
from zdd_tui.cloud.models import LoadBalancer
from zdd_tui.config import Config
from zdd_tui.rollout.interfaces import LBSettings


class DOCloud:
    """LB settings and health by droplet name, and registry tag lookups, for one zdd.yaml."""

    def __init__(self, client: DOClient, config: Config):
        self.client = client
        self.config = config
        self._lb_id: str | None = None
        self._names: dict[int, str] = {}

    async def load_balancer(self) -> LoadBalancer | None:
        """The LB named in the config (id remembered; looked up again if it disappears)."""
        if self._lb_id is not None:
            try:
                return await self.client.get_load_balancer(self._lb_id)
            except NotFoundError:
                self._lb_id = None
        lb = await self.client.find_load_balancer(self.config.load_balancer.name)
        self._lb_id = lb.id if lb else None
        return lb

    async def lb_settings(self) -> LBSettings:
        lb = await self.load_balancer()
        # No LB yet (e.g. before setup finished): the settings setup will give it.
        hc = lb.health_check if lb is not None else self.config.load_balancer.health_check
        return LBSettings(
            interval=float(hc.check_interval_seconds),
            timeout=float(hc.response_timeout_seconds),
            unhealthy_threshold=hc.unhealthy_threshold,
            healthy_threshold=hc.healthy_threshold,
        )

    async def lb_health(self) -> dict[str, bool | None]:
        """droplet name -> healthy as the LB sees it; None for a droplet it reports nothing for."""
        droplets = await self.client.list_droplets(self.config.droplets.tag)
        lb_id = self._lb_id
        if lb_id is None:
            lb = await self.load_balancer()
            if lb is None:
                return {d.name: None for d in droplets}
            lb_id = lb.id
        try:
            health = await self.client.lb_droplet_health(lb_id)
        except NotFoundError:
            self._lb_id = None
            return {d.name: None for d in droplets}
        return {d.name: health.get(d.id) for d in droplets}

    async def tag_exists(self, tag: str) -> bool:
        try:
            tags = await self.client.list_tags(self.config.registry.name, self.config.registry.repository)
        except NotFoundError:
            return False
        return any(t.tag == tag for t in tags)
