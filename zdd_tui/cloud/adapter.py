"""`DOCloud`: the engine's view of the cloud (rollout.interfaces.Cloud) over the DigitalOcean client."""

from __future__ import annotations

from zdd_tui.cloud.client import DOClient
from zdd_tui.cloud.errors import CloudError, NotFoundError
from zdd_tui.cloud.models import LoadBalancer
from zdd_tui.config import Config
from zdd_tui.rollout.interfaces import LBSettings


class DOCloud:
    """LB settings and health by droplet name, and registry tag lookups, for one zdd.yaml."""

    def __init__(self, client: DOClient, config: Config):
        self.client = client
        self.config = config
        self._lb_id: str | None = None
        self._ids: dict[str, int] = {}  # droplet name -> id, kept while a droplet is out of the LB

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

    async def _droplet_id(self, host: str) -> int:
        if host not in self._ids:
            for d in await self.client.list_droplets(self.config.droplets.tag):
                self._ids[d.name] = d.id
        if host not in self._ids:
            raise CloudError(f"no droplet named {host} tagged {self.config.droplets.tag}")
        return self._ids[host]

    async def _lb_for_membership(self) -> LoadBalancer:
        lb = await self.load_balancer()
        if lb is None:
            raise CloudError(f"no load balancer named {self.config.load_balancer.name}",
                             "run 'zdd-tui setup' to create it")
        return lb

    async def lb_detach(self, host: str) -> None:
        """Take the droplet out of the LB: a tag-based LB (what setup creates) loses it with the
        tag, which is also the fleet's, so until `lb_attach` the droplet is not listed under it
        (its id is kept here); an LB by droplet ids has it removed from that list."""
        did = await self._droplet_id(host)
        lb = await self._lb_for_membership()
        if lb.tag:
            await self.client.untag_resources(lb.tag, [did])
        else:
            await self.client.lb_remove_droplets(lb.id, [did])

    async def lb_attach(self, host: str) -> None:
        did = await self._droplet_id(host)
        lb = await self._lb_for_membership()
        if lb.tag:
            await self.client.tag_resources(lb.tag, [did])
        else:
            await self.client.lb_add_droplets(lb.id, [did])
