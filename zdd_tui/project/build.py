"""Build and push: the project's ImageBuilder (Docker Engine API) and short-lived read-write
registry credentials for one push."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from zdd_tui.config import Config

if TYPE_CHECKING:
    from zdd_tui.images.build import ImageBuilder
    from zdd_tui.images.git import GitState

PUSH_CREDENTIALS_SECONDS = 900


def image_builder(config: Config, *, project_dir: str | None = None, docker_host: str | None = None) -> ImageBuilder:
    """An ImageBuilder for the project (the config's directory holds the git repository and the
    build paths, unless project_dir says otherwise); nothing is contacted yet."""
    from zdd_tui.images.build import ImageBuilder

    return ImageBuilder(config, project_dir=project_dir, docker_host=docker_host)


def parse_build_args(items: list[str] | None) -> dict[str, str]:
    """`--build-arg K=V` items as a mapping (UsageError on a malformed one)."""
    from zdd_tui.images.build import parse_build_args as parse

    return parse(items)


def git_state(project_dir: Any) -> GitState:
    """The checkout's HEAD, dirty state and changed files (blocking: run it in a thread)."""
    from zdd_tui.images.git import git_state as state

    return state(project_dir)


async def push_credentials(client: Any, config: Config) -> Any:
    """Short-lived read-write registry credentials (one API request)."""
    return await client.docker_credentials(config.registry.name, read_write=True,
                                           expiry_seconds=PUSH_CREDENTIALS_SECONDS)


async def push_credentials_for(config: Config, context: str | None = None) -> Any:
    """The same without an open Project (a build needs no droplets): a client for this one request."""
    from zdd_tui.cloud.client import DOClient
    from zdd_tui.secrets import get_token

    async with DOClient(config.digitalocean.api_url, get_token(config, context or config.context)) as do:
        return await push_credentials(do, config)


def prebuilt_only(config: Config) -> bool:
    """The sandbox's own registry holds prebuilt sample versions: nothing to build or push to."""
    from zdd_tui.sandbox import SANDBOX_REGISTRY_SERVER

    return getattr(config.registry, "server", None) == SANDBOX_REGISTRY_SERVER


def build_tag(tags: tuple[str, ...]) -> str:
    """The tag a build is known by (its hooks' ZDD_TAG): the sha- one, else the last."""
    return next((t for t in tags if t.startswith("sha-")), tags[-1])


async def build_image(config: Config, builder: ImageBuilder, *, allow_dirty: bool = False,
                      git: GitState | None = None, build_args: dict[str, str] | None = None,
                      on_event: Any = None) -> Any:
    """The one way an image is built, headless or in the console: the pre-build hook, then the
    build. The hook runs before the engine is asked for anything; when it fails (HookFailed,
    exit 4) nothing is built. Its output goes to `on_event` as LogLine events."""
    from zdd_tui.project.hooks import before_build

    git, tags = builder.plan(allow_dirty=allow_dirty, git=git)
    await before_build(config, build_tag(tags), on_event)
    return await builder.build(allow_dirty=allow_dirty, build_args=build_args, on_event=on_event, git=git)
