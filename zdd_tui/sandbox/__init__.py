"""The sandbox: a local stand-in for DigitalOcean (API, load balancer, registry, hosts)."""

from typing import Self

# The registry server the sandbox's project file names; nothing is pushed to it (its versions
# are prebuilt), so front ends offer no build against it.
SANDBOX_REGISTRY_SERVER = "registry.sandbox.local"


class LocalServer:
    """`async with` runs a local server of the sandbox: start on entry, stop on exit."""

    async def start(self) -> object:
        return None

    async def stop(self) -> None:
        return None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
