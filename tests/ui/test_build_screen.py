"""`b` (build and push) in the console, on the real ImageBuilder.

The Docker Engine API is the one thing replaced: `zdd_tui.images.build.docker_api` returns a
recording stand-in with the engine's stream shapes (as tests/setup/test_build.py does), so the
screen's flow (plan -> confirm -> build output and per-layer progress -> digests) is asserted on
what was built and pushed. The push credentials come from the in-process sandbox DO API's
docker-credentials endpoint, through the console's own source. Without an engine the screen says
so and how to fix it; in the sandbox it says its registry holds prebuilt versions.
"""

from __future__ import annotations

import subprocess

import pytest

from zdd_tui.cloud.client import DOClient
from zdd_tui.config import BuildConfig, Config, DigitalOceanConfig, RegistryConfig
from zdd_tui.ui.app import ZddApp
from zdd_tui.ui.screens.build import BuildScreen
from zdd_tui.ui.screens.confirm import ConfirmScreen
from zdd_tui.ui.source import FleetSource

from .conftest import project_on, until
from .screentext import screen_text

SIZE = (130, 44)
TOKEN = "build-screen-test-token"
IMAGE_ID = "sha256:" + "a" * 64
DIGEST = "sha256:" + "b" * 64
REPO = "registry.digitalocean.com/team/svc"


class RecordingAPI:
    """The APIClient calls ImageBuilder makes, recorded; streams shaped like the engine's."""

    def __init__(self):
        self.calls: list[tuple] = []

    def build(self, **kw):
        self.calls.append(("build", kw))
        yield {"stream": "Step 1/2 : FROM debian:12-slim\n"}
        yield {"stream": " ---> Running in 0123abcd\n"}
        yield {"stream": "Successfully built aaaaaaaaaaaa\n"}
        yield {"aux": {"ID": IMAGE_ID}}

    def tag(self, image, repository, tag, force=False):
        self.calls.append(("tag", image, repository, tag))
        return True

    def push(self, repository, tag, stream, decode, auth_config):
        self.calls.append(("push", repository, tag, auth_config))
        yield {"status": f"The push refers to repository [{repository}]"}
        for layer in ("l1", "l2"):
            yield {"status": "Preparing", "progressDetail": {}, "id": layer}
        if tag == "latest":
            for layer in ("l1", "l2"):
                yield {"status": "Layer already exists", "progressDetail": {}, "id": layer}
        else:
            yield {"status": "Pushing", "progressDetail": {"current": 512, "total": 2048}, "id": "l1"}
            yield {"status": "Pushing", "progressDetail": {"current": 2048, "total": 2048}, "id": "l1"}
            yield {"status": "Pushed", "progressDetail": {}, "id": "l1"}
            yield {"status": "Pushed", "progressDetail": {}, "id": "l2"}
        yield {"status": f"{tag}: digest: {DIGEST} size: 739"}
        yield {"progressDetail": {}, "aux": {"Tag": tag, "Digest": DIGEST, "Size": 739}}

    def inspect_image(self, ref):
        return {"Id": IMAGE_ID}

    def close(self):
        pass


def _git(repo, *args) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout


@pytest.fixture
def repo(tmp_path):
    r = tmp_path / "proj"
    r.mkdir()
    _git(r, "init", "-q")
    _git(r, "config", "user.email", "t@example.invalid")
    _git(r, "config", "user.name", "t")
    (r / "Dockerfile").write_text("FROM debian:12-slim\nARG VERSION\n")
    (r / "zdd.yaml").write_text("app: svc\n")
    _git(r, "add", ".")
    _git(r, "commit", "-q", "-m", "one")
    return r


@pytest.fixture
async def do_api():
    from zdd_tui.sandbox.api import SandboxAPI

    api = SandboxAPI(None, TOKEN, activation_delay=0.2)
    await api.start()
    api.state.create_registry("team", "basic")
    try:
        yield api
    finally:
        await api.stop()


@pytest.fixture
async def project_source(repo, do_api):
    """A non-sandbox project (git repo with a Dockerfile) whose DO API is the in-process one."""
    config = Config(
        app="svc",
        context="test",
        digitalocean=DigitalOceanConfig(api_url=do_api.url, region="nyc3"),
        registry=RegistryConfig(name="team", repository="svc"),
        build=BuildConfig(args={"BASE": "debian:12-slim"}),
        path=repo / "zdd.yaml",
    )
    client = DOClient(do_api.url, TOKEN)
    await client.__aenter__()
    src = FleetSource(project_on(config, client), label="test project")
    try:
        yield src
    finally:
        await src.close()


def _no_engine_calls(monkeypatch):
    def refuse(*a, **kw):
        raise AssertionError("the Docker engine must not be contacted here")

    monkeypatch.setattr("zdd_tui.images.build.docker_api", refuse)


async def test_build_confirm_progress_and_digests(repo, do_api, project_source, monkeypatch):
    api = RecordingAPI()
    hosts: list = []
    monkeypatch.setattr("zdd_tui.images.build.docker_api", lambda host=None: hosts.append(host) or api)
    sha = _git(repo, "rev-parse", "--short=7", "HEAD").strip()
    app = ZddApp(project_source, poll="once")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("b")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), 15, "the build confirmation")
        text = screen_text(app)
        assert f"Build and push sha-{sha}?" in text
        assert f"{REPO}:latest" in text and f"{REPO}:sha-{sha}" in text
        assert api.calls == [] and do_api.issued_credentials == []  # nothing before the answer
        await pilot.press("y")
        screen = app.screen
        assert isinstance(screen, BuildScreen)
        await until(pilot, lambda: screen.phase in ("done", "failed"), 20, "the build and push")
        assert screen.phase == "done", screen.error
        await pilot.pause(0.2)

        # What was built, tagged and pushed, with which credentials.
        kind, kw = api.calls[0]
        assert kind == "build" and kw["path"] == str(repo) and kw["dockerfile"] == "Dockerfile"
        assert kw["tag"] == f"{REPO}:sha-{sha}"
        assert kw["buildargs"] == {"VERSION": f"sha-{sha}", "BASE": "debian:12-slim"}
        assert {c[3] for c in api.calls if c[0] == "tag"} == {"latest", f"sha-{sha}"}
        pushes = [c for c in api.calls if c[0] == "push"]
        assert [(c[1], c[2]) for c in pushes] == [(REPO, f"sha-{sha}"), (REPO, "latest")]
        assert [c["read_write"] for c in do_api.issued_credentials] == [True]
        auth = pushes[0][3]
        assert auth["serveraddress"] == "registry.digitalocean.com" and auth["username"].startswith("rw-")
        assert screen.pushed.digests == {f"{REPO}:sha-{sha}": DIGEST, f"{REPO}:latest": DIGEST}
        assert hosts == [None]  # DOCKER_HOST's engine (or the local socket), as the CLI does

        text = screen_text(app)
        assert "✔ Pushed" in text and DIGEST in text
        assert "Step 1/2 : FROM debian:12-slim" in text  # the build output log
        assert "✔ clean" in text
        # One row per layer, updated in place; the last push's status is what remains.
        table = screen.query_one("#build-layers")
        assert table.row_count == 2
        assert [str(table.get_cell(k, "status")) for k in ("l1", "l2")] == ["Layer already exists"] * 2
        assert "done ✔" in table.get_cell("l1", "progress")

        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, BuildScreen)


async def test_build_cancel_builds_nothing_and_dirty_tree_is_marked(repo, do_api, project_source, monkeypatch):
    api = RecordingAPI()
    monkeypatch.setattr("zdd_tui.images.build.docker_api", lambda host=None: api)
    (repo / "Dockerfile").write_text("FROM debian:12-slim\nARG VERSION\nRUN true\n")
    sha = _git(repo, "rev-parse", "--short=7", "HEAD").strip()
    app = ZddApp(project_source, poll="once")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("b")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), 15, "the build confirmation")
        text = screen_text(app)
        assert f"Build and push sha-{sha}-dirty?" in text and "uncommitted change" in text
        assert app.focused is not None and app.focused.id == "no"  # a stray Enter does not build dirty
        await pilot.press("n")
        await pilot.pause(0.2)
        screen = app.screen
        assert isinstance(screen, BuildScreen) and screen.phase == "cancelled"
        assert "dirty: 1 uncommitted change(s)" in screen_text(app)
        assert "Cancelled: nothing was built or pushed" in screen_text(app)
        assert api.calls == [] and do_api.issued_credentials == []


async def test_no_docker_engine_says_so_and_how_to_fix(project_source, do_api, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/zdd-test/docker.sock")
    app = ZddApp(project_source, poll="once")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("b")
        screen = app.screen
        assert isinstance(screen, BuildScreen)
        await until(pilot, lambda: screen.phase not in ("planning",), 30, "the engine check")
        assert screen.phase == "no-engine"
        await pilot.pause(0.1)
        text = screen_text(app)
        assert "No Docker engine reachable: nothing was built or pushed" in text
        assert "unix:///nonexistent/zdd-test/docker.sock" in text
        assert "How to fix: start Docker" in text and "DOCKER_HOST" in text
        assert not isinstance(app.screen, ConfirmScreen)  # nothing offered that cannot run
        assert do_api.issued_credentials == []  # no credentials minted for a push that cannot happen


async def test_sandbox_says_its_registry_is_prebuilt_and_builds_nothing(source, monkeypatch):
    _no_engine_calls(monkeypatch)
    app = ZddApp(source, poll="once")
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: bool(app.fleet.tags), 30, "the registry pane")
        await pilot.press("b")
        screen = app.screen
        assert isinstance(screen, BuildScreen)
        await until(pilot, lambda: screen.phase == "sandbox", 10, "the sandbox message")
        await pilot.pause(0.1)
        text = screen_text(app)
        assert "SANDBOX" in text and "This is the sandbox: nothing is built or pushed here" in text
        assert "holds prebuilt versions of the sample service" in text
        assert "needs a Docker engine (DOCKER_HOST" in text
        some_tag = next(t.tag for t in app.fleet.tags if t.tag != "latest")
        assert some_tag in text
        await pilot.press("b")  # asking again still builds nothing
        await pilot.pause(0.1)
        assert screen.phase == "sandbox" and not isinstance(app.screen, ConfirmScreen)


def _pre_build_hook(repo, body: str) -> None:
    hooks = repo / ".zdd" / "hooks"
    hooks.mkdir(parents=True)
    (hooks / "pre-build").write_text("#!/bin/sh\necho \"$ZDD_ACTION $ZDD_TAG\" >> ../pre-build.ran\n" + body)
    (hooks / "pre-build").chmod(0o755)
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "a pre-build hook")


async def _confirm_build(app, pilot) -> BuildScreen:
    await pilot.pause()
    await pilot.press("b")
    await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), 15, "the build confirmation")
    await pilot.press("y")
    screen = app.screen
    assert isinstance(screen, BuildScreen)
    await until(pilot, lambda: screen.phase in ("done", "failed"), 20, "the build")
    await pilot.pause(0.2)
    return screen


async def test_a_failing_pre_build_hook_builds_nothing_and_says_why(repo, do_api, project_source, monkeypatch):
    """The console runs the pre-build hook as `zdd-tui build` does; its failure stops the build
    before the engine is asked to build, and the screen quotes it."""
    api = RecordingAPI()
    monkeypatch.setattr("zdd_tui.images.build.docker_api", lambda host=None: api)
    _pre_build_hook(repo, "echo 'unit tests: 3 failed'\nexit 1\n")
    sha = _git(repo, "rev-parse", "--short=7", "HEAD").strip()
    app = ZddApp(project_source, poll="once")
    async with app.run_test(size=SIZE) as pilot:
        screen = await _confirm_build(app, pilot)
        assert screen.phase == "failed"
        assert (repo.parent / "pre-build.ran").read_text() == f"build sha-{sha}\n"
        assert api.calls == [] and do_api.issued_credentials == []  # nothing built, tagged or pushed
        assert "hook .zdd/hooks/pre-build failed (exit 1); nothing was built" in (screen.error or "")
        text = screen_text(app)
        assert "Build and push failed: hook .zdd/hooks/pre-build failed (exit 1)" in text
        assert "unit tests: 3 failed" in text


async def test_a_passing_pre_build_hook_runs_before_the_build(repo, do_api, project_source, monkeypatch):
    marker = repo.parent / "pre-build.ran"

    class Recording(RecordingAPI):
        def build(self, **kw):
            self.calls.append(("hook ran before the build", marker.exists()))
            yield from super().build(**kw)

    api = Recording()
    monkeypatch.setattr("zdd_tui.images.build.docker_api", lambda host=None: api)
    _pre_build_hook(repo, "echo 'lint: clean'\n")
    app = ZddApp(project_source, poll="once")
    async with app.run_test(size=SIZE) as pilot:
        screen = await _confirm_build(app, pilot)
        assert screen.phase == "done", screen.error
        assert api.calls[0] == ("hook ran before the build", True)
        assert len(marker.read_text().splitlines()) == 1  # once
        assert "hook pre-build: lint: clean" in screen_text(app)
