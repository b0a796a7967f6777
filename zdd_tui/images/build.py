"""Build, tag and push the service image through the Docker Engine API (the `docker` SDK).

Tags: `<registry.server>/<registry.name>/<repository>:latest` and `:sha-<HEAD sha7>`; a dirty
tree is refused unless allow_dirty, and then the sha tag is `sha-<sha7>-dirty`. Push uses
short-lived read-write registry credentials passed as the API's auth_config (in memory only).
Progress goes to a listener as events (zdd_tui.images.events: build output lines, per-layer
push progress). The engine's API is used directly: no CLI output is parsed.
"""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from zdd_tui.cloud.models import DockerCredentials
from zdd_tui.config import Config, ConfigError, inside_project_problem
from zdd_tui.errors import RefusedError, UsageError, ZddError
from zdd_tui.events import Event, Listener
from zdd_tui.images.events import BuildFinished, BuildOutput, BuildStarted, LayerProgress, PushFinished
from zdd_tui.images.git import GitState, git_state

if TYPE_CHECKING:  # the docker SDK is imported where it is used: it is slow to import
    import docker


class BuildError(ZddError):
    """The engine refused or failed the build/push; the message carries its error detail."""


@dataclass(frozen=True)
class BuildResult:
    image_id: str
    repo: str
    tags: tuple[str, ...]  # tag names, e.g. ("latest", "sha-abc1234")
    git: GitState

    @property
    def refs(self) -> list[str]:
        return [f"{self.repo}:{t}" for t in self.tags]

    @property
    def sha_tag(self) -> str:
        return next(t for t in self.tags if t.startswith("sha-"))


@dataclass(frozen=True)
class PushResult:
    refs: tuple[str, ...]
    digests: dict[str, str] = field(default_factory=dict)  # ref -> sha256:...


# --- helpers -------------------------------------------------------------------------------


def parse_build_args(items: list[str] | None) -> dict[str, str]:
    """`K=V` strings from the command line; a precise error for anything else."""
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key or not key.isascii() or not key.replace("_", "a").isalnum() or key[0].isdigit():
            raise UsageError(f"--build-arg {item!r}: expected KEY=VALUE with KEY made of letters, digits and '_'")
        out[key] = value
    return out


def auth_config_for(credentials: DockerCredentials | dict | None, server: str) -> dict | None:
    """docker config `auths` -> the SDK's auth_config for one registry (None: anonymous)."""
    if credentials is None:
        return None
    auths = credentials.auths if isinstance(credentials, DockerCredentials) else credentials.get("auths", credentials)
    entry = auths.get(server) or auths.get(f"https://{server}") or auths.get(f"http://{server}")
    if not entry:
        return None
    if "auth" in entry:
        user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
    else:
        user, password = entry.get("username", ""), entry.get("password", "")
    return {"username": user, "password": password, "serveraddress": server}


def docker_api(docker_host: str | None = None) -> docker.APIClient:
    """The low-level client for DOCKER_HOST or the given host (the lab passes a unix socket)."""
    import docker  # imported here: slow to import, and only build/push need it
    import docker.errors
    import docker.utils

    try:
        if docker_host:
            return docker.APIClient(base_url=docker_host, version="auto")
        return docker.APIClient(version="auto", **docker.utils.kwargs_from_env())
    except docker.errors.DockerException as exc:
        where = docker_host or os.environ.get("DOCKER_HOST") or "the default socket"
        raise UsageError(
            f"cannot reach the Docker engine at {where}: {exc}", "start Docker or set DOCKER_HOST / --docker-host"
        ) from None


# --- builder -------------------------------------------------------------------------------


class ImageBuilder:
    def __init__(
        self,
        config: Config,
        *,
        project_dir: str | Path | None = None,
        docker_host: str | None = None,
        api: docker.APIClient | None = None,
    ):
        self.config = config
        base = project_dir or (config.path.parent if config.path else Path("."))
        self.project_dir = Path(base).resolve()
        self.docker_host = docker_host
        self._api = api

    @property
    def api(self) -> docker.APIClient:
        if self._api is None:
            self._api = docker_api(self.docker_host)
        return self._api

    @property
    def repo(self) -> str:
        return self.config.image_repo

    def plan(self, *, allow_dirty: bool = False, git: GitState | None = None) -> tuple[GitState, tuple[str, ...]]:
        """The git state and the tags a build would make; refuses a dirty tree unless allowed."""
        git = git or git_state(self.project_dir)
        if git.dirty and not allow_dirty:
            shown = ", ".join(line.strip() for line in git.changed[:5]) + (" ..." if len(git.changed) > 5 else "")
            raise RefusedError(
                f"the working tree has uncommitted changes ({shown}); "
                f"an image tagged sha-{git.sha} would not match that commit",
                "commit the changes, or pass --allow-dirty to build anyway (tagged sha-<sha>-dirty)",
            )
        sha_tag = f"sha-{git.sha}-dirty" if git.dirty else f"sha-{git.sha}"
        return git, ("latest", sha_tag)

    def _paths(self) -> tuple[Path, str]:
        context = (self.project_dir / self.config.build.context).resolve()
        dockerfile = (self.project_dir / self.config.build.dockerfile).resolve()
        # The whole context goes to the Docker daemon (and from there into layers a registry
        # keeps): it must not leave the project, also not through a symlink.
        problem = inside_project_problem(self.config.build.context)
        if problem is None and not context.is_relative_to(self.project_dir):
            problem = f"a directory inside the project {self.project_dir} (symlinks are followed)"
        if problem is not None:
            where = self.config.path or "zdd.yaml"
            raise ConfigError(f"{where}: build.context: expected {problem}; found {self.config.build.context!r} "
                              f"({context})", "point build.context at a directory of the project; nothing was sent")
        if not context.is_dir():
            raise UsageError(f"build context {context} is not a directory", "set build.context in zdd.yaml")
        if not dockerfile.is_file():
            raise UsageError(f"Dockerfile {dockerfile} not found", "set build.dockerfile in zdd.yaml")
        try:
            rel = dockerfile.relative_to(context)
        except ValueError:
            raise UsageError(
                f"Dockerfile {dockerfile} is outside the build context {context}",
                "put the Dockerfile inside build.context",
            ) from None
        return context, str(rel)

    async def build(
        self,
        *,
        allow_dirty: bool = False,
        build_args: dict[str, str] | None = None,
        on_event: Listener | None = None,
        git: GitState | None = None,
    ) -> BuildResult:
        git, tags = self.plan(allow_dirty=allow_dirty, git=git)
        context, dockerfile = self._paths()
        # VERSION bakes ZDD_VERSION into the image (the service contract); explicit args win.
        args = {"VERSION": tags[1], **self.config.build.args, **(build_args or {})}
        emit = _threadsafe(on_event)
        refs = tuple(f"{self.repo}:{t}" for t in tags)
        emit(BuildStarted(tags=refs, context=str(context), dockerfile=dockerfile))

        def work() -> str:
            import docker.errors  # lazily, as in docker_api()
            image_id = None
            try:
                stream = self.api.build(
                    path=str(context), dockerfile=dockerfile, tag=refs[1], buildargs=args,
                    rm=True, forcerm=True, decode=True, pull=False,
                )
                for chunk in stream:
                    if "error" in chunk:
                        detail = (chunk.get("errorDetail") or {}).get("message") or chunk["error"]
                        raise BuildError(
                            f"docker build failed: {detail.strip()}", "fix the Dockerfile or build args and build again"
                        )
                    if "stream" in chunk:
                        for line in chunk["stream"].splitlines():
                            if line.strip():
                                emit(BuildOutput(line.rstrip()))
                    aux = chunk.get("aux") or {}
                    if "ID" in aux:
                        image_id = aux["ID"]
                if image_id is None:
                    image_id = self.api.inspect_image(refs[1])["Id"]
                for t in tags:
                    self.api.tag(image_id, self.repo, t, force=True)
            except docker.errors.APIError as exc:
                raise BuildError(f"docker build failed: {exc.explanation or exc}") from None
            except docker.errors.DockerException as exc:
                raise BuildError(f"docker build failed: {exc}") from None
            return image_id

        image_id = await asyncio.to_thread(work)
        emit(BuildFinished(image_id=image_id, tags=refs))
        return BuildResult(image_id=image_id, repo=self.repo, tags=tags, git=git)

    async def push(
        self,
        result: BuildResult,
        credentials: DockerCredentials | dict | None,
        *,
        on_event: Listener | None = None,
    ) -> PushResult:
        auth = auth_config_for(credentials, self.config.registry.server)
        emit = _threadsafe(on_event)
        digests: dict[str, str] = {}

        def push_one(tag: str) -> None:
            import docker.errors  # lazily, as in docker_api()
            ref = f"{result.repo}:{tag}"
            try:
                stream = self.api.push(result.repo, tag=tag, stream=True, decode=True, auth_config=auth)
                for chunk in stream:
                    if "error" in chunk:
                        detail = (chunk.get("errorDetail") or {}).get("message") or chunk["error"]
                        raise BuildError(
                            f"push of {ref} failed: {detail.strip()}", "check the registry name and its credentials"
                        )
                    aux = chunk.get("aux") or {}
                    if "Digest" in aux:
                        digests[ref] = aux["Digest"]
                        emit(PushFinished(ref=ref, digest=aux["Digest"], size=aux.get("Size")))
                        continue
                    if "id" in chunk and "status" in chunk:
                        pd = chunk.get("progressDetail") or {}
                        emit(LayerProgress(tag=tag, layer=chunk["id"], status=chunk["status"],
                                           current=pd.get("current"), total=pd.get("total")))
            except docker.errors.APIError as exc:
                raise BuildError(f"push of {ref} failed: {exc.explanation or exc}") from None
            if ref not in digests:
                raise BuildError(f"push of {ref} ended without a digest from the engine")

        def work() -> None:
            # The sha tag first: if `latest` then fails, the registry still has the exact build.
            for t in sorted(result.tags, key=lambda t: t == "latest"):
                push_one(t)

        await asyncio.to_thread(work)
        return PushResult(refs=tuple(result.refs), digests=digests)

    def close(self) -> None:
        if self._api is not None:
            self._api.close()
            self._api = None


def _threadsafe(listener: Listener | None) -> Callable[[Event], None]:
    """Deliver events on the caller's loop even though the SDK streams in a worker thread."""
    if listener is None:
        return lambda ev: None
    loop = asyncio.get_running_loop()

    def emit(ev: Event) -> None:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            listener(ev)
        else:
            loop.call_soon_threadsafe(listener, ev)

    return emit
