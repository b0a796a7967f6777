"""One operator session against one project: config, credentials, the DO client, host runtimes.

Headless commands and the console both open a `Session`; it owns the connections and closes
them. Nothing here prints; callers render.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from zdd_tui.cloud.client import DOClient
from zdd_tui.cloud.adapter import DOCloud
from zdd_tui.cloud.models import Droplet
from zdd_tui.config import Config
from zdd_tui.rollout.interfaces import HostRuntime
from zdd_tui.runtimes import open_runtime
from zdd_tui.secrets import get_token


@dataclass
class Session:
    config: Config
    client: DOClient
    fleet: DOCloud
    runtime_options: dict = field(default_factory=dict)
    context: str = "default"
    _runtimes: dict[int, HostRuntime] = field(default_factory=dict)

    @classmethod
    async def open(cls, config: Config, context: str | None = None, **runtime_options) -> "Session":
        context = context or config.context
        token = get_token(config, context)
        client = DOClient(config.digitalocean.api_url, token)
        await client.__aenter__()
        # Runtimes share this session's client (short-lived registry credentials on each pull)
        # and context; runtimes ignore options they do not use.
        runtime_options = {"client": client, "context": context, **runtime_options}
        return cls(
            config=config,
            client=client,
            fleet=DOCloud(client, config),
            runtime_options=runtime_options,
            context=context,
        )

    async def droplets(self) -> list[Droplet]:
        """The fleet: droplets carrying the config's tag, sorted by name."""
        return sorted(await self.client.list_droplets(self.config.droplets.tag), key=lambda d: d.name)

    def runtime(self, droplet: Droplet) -> HostRuntime:
        """The (cached) runtime for a droplet."""
        rt = self._runtimes.get(droplet.id)
        if rt is None:
            rt = open_runtime(self.config, droplet, **self.runtime_options)
            self._runtimes[droplet.id] = rt
        return rt

    async def close(self) -> None:
        for rt in self._runtimes.values():
            try:
                await rt.close()
            except Exception:
                pass
        self._runtimes.clear()
        await self.client.__aexit__(None, None, None)

    async def __aenter__(self) -> "Session":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()
