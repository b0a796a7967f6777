"""Where the sandbox API's registry tags come from.

`StateRegistry` (default): the tags kept in the sandbox state (the sample service's versions, each
with a sandbox-only behaviour). `DistributionRegistry` (lab mode): a real Distribution registry's
HTTP API (`/v2/_catalog`, `/v2/<name>/tags/list`, manifests and config blobs), so tags pushed by a
real `docker push` show up through the DigitalOcean-shaped registry endpoints.

Tag records have DigitalOcean's fields (tag, manifest_digest, compressed_size_bytes, size_bytes,
updated_at) plus optional sandbox-only keys starting with "_" (never served).
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Protocol

import aiohttp

from zdd_tui.sandbox.state import NotFound, SandboxState

MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.index.v1+json",
    ]
)


class RegistryBackend(Protocol):
    async def repositories(self) -> list[str]: ...

    async def tags(self, repository: str) -> list[dict]:
        """Tag records, newest first."""

    async def delete_tag(self, repository: str, tag: str) -> None:
        """Raise `state.NotFound` when absent."""


class StateRegistry:
    def __init__(self, state: SandboxState):
        self.state = state

    async def repositories(self) -> list[str]:
        return sorted(self.state.data["repositories"])

    async def tags(self, repository: str) -> list[dict]:
        return self.state.registry_tags(repository)

    async def delete_tag(self, repository: str, tag: str) -> None:
        self.state.delete_registry_tag(repository, tag)


class DistributionRegistry:
    """Tags of `<registry_name>/<repository>` in a Distribution registry at `base_url`.

    `base_url` like "http://10.9.0.1:5000". Deleting a tag deletes its manifest by digest (the
    registry must run with deletes enabled); every tag on that digest goes with it, as on DOCR.
    """

    def __init__(
        self,
        base_url: str,
        registry_name: str,
        *,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 10.0,
    ):
        self.base_url = base_url.rstrip("/")
        self.registry_name = registry_name
        self._basic = base64.b64encode(f"{username}:{password or ''}".encode()).decode() if username else ""
        self._timeout = aiohttp.ClientTimeout(total=timeout)

    @property
    def server(self) -> str:
        """host:port, as docker names it in image references and config.json `auths`."""
        return self.base_url.split("://", 1)[-1]

    def _session(self) -> aiohttp.ClientSession:
        headers = {"Authorization": f"Basic {self._basic}"} if self._basic else {}
        return aiohttp.ClientSession(headers=headers, timeout=self._timeout)

    async def repositories(self) -> list[str]:
        prefix = self.registry_name + "/"
        async with self._session() as s:
            async with s.get(f"{self.base_url}/v2/_catalog", params={"n": "1000"}) as r:
                r.raise_for_status()
                names = (await r.json()).get("repositories") or []
        return sorted(n[len(prefix) :] for n in names if n.startswith(prefix))

    async def _manifest(self, s: aiohttp.ClientSession, name: str, ref: str) -> tuple[str, dict] | None:
        url = f"{self.base_url}/v2/{name}/manifests/{ref}"
        async with s.get(url, headers={"Accept": MANIFEST_TYPES}) as r:
            if r.status == 404:
                return None
            r.raise_for_status()
            digest = r.headers.get("Docker-Content-Digest", "")
            return digest, await r.json(content_type=None)

    async def tags(self, repository: str) -> list[dict]:
        name = f"{self.registry_name}/{repository}"
        out = []
        async with self._session() as s:
            async with s.get(f"{self.base_url}/v2/{name}/tags/list") as r:
                if r.status == 404:
                    return []
                r.raise_for_status()
                tags = (await r.json()).get("tags") or []
            for tag in tags:
                found = await self._manifest(s, name, tag)
                if found is None:
                    continue
                digest, manifest = found
                layers = manifest.get("layers") or []
                config = manifest.get("config") or {}
                compressed = sum(int(layer.get("size", 0)) for layer in layers) + int(config.get("size", 0))
                updated = None
                if config.get("digest"):
                    # The image config's "created" is the build time: the best "updated_at" there is.
                    async with s.get(f"{self.base_url}/v2/{name}/blobs/{config['digest']}") as br:
                        if br.status == 200:
                            created = (await br.json(content_type=None)).get("created")
                            updated = _iso(created)
                out.append(
                    {
                        "tag": tag,
                        "manifest_digest": digest,
                        "compressed_size_bytes": compressed,
                        "size_bytes": compressed,
                        "updated_at": updated or "1970-01-01T00:00:00Z",
                    }
                )
        out.sort(key=lambda t: t["tag"])
        out.sort(key=lambda t: t["updated_at"], reverse=True)
        return out

    async def delete_tag(self, repository: str, tag: str) -> None:
        name = f"{self.registry_name}/{repository}"
        async with self._session() as s:
            found = await self._manifest(s, name, tag)
            if found is None:
                raise NotFound(f"tag {tag!r} not found in repository {repository!r}")
            async with s.delete(f"{self.base_url}/v2/{name}/manifests/{found[0]}") as r:
                r.raise_for_status()

    def auth_value(self) -> str:
        """The base64 `user:password` docker puts in config.json (empty when anonymous)."""
        return self._basic


def _iso(value: str | None) -> str | None:
    """Docker writes `created` in UTC with up to nanoseconds ("...T12:34:56.123456789Z")."""
    if not value:
        return None
    try:
        t = datetime.strptime(value[:19] + "+0000", "%Y-%m-%dT%H:%M:%S%z")
    except ValueError:
        return None
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
