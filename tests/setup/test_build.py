"""Image build planning: git sha and dirty check on a real repository, tags, build args, auth,
and the builder's use of the Engine API (a recording stand-in for the SDK's APIClient; the real
engine and registry are exercised in the lab)."""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import sys

import pytest

from zdd_tui.config import BuildConfig, Config, RegistryConfig
from zdd_tui.errors import RefusedError, UsageError
from zdd_tui.images.build import BuildError, ImageBuilder, auth_config_for, parse_build_args
from zdd_tui.images.events import BuildFinished, BuildOutput, LayerProgress, PushFinished
from zdd_tui.images.git import git_state, head_sha


def _git(repo, *args):
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


@pytest.fixture
def repo(tmp_path):
    r = tmp_path / "proj"
    r.mkdir()
    _git(r, "init", "-q")
    _git(r, "config", "user.email", "t@example.invalid")
    _git(r, "config", "user.name", "t")
    (r / "Dockerfile").write_text("ARG BASE\nFROM $BASE\nARG VERSION\n")
    (r / "app.txt").write_text("v1\n")
    _git(r, "add", ".")
    _git(r, "commit", "-q", "-m", "one")
    return r


def _cfg(**kw) -> Config:
    return Config(registry=RegistryConfig(server="reg.test:5000", name="team", repository="svc"), **kw)


def test_sha_and_clean_tags(repo):
    sha = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True).stdout[:7]
    assert head_sha(repo) == sha
    git, tags = ImageBuilder(_cfg(), project_dir=repo).plan()
    assert git.sha == sha and not git.dirty
    assert tags == ("latest", f"sha-{sha}")


@pytest.mark.parametrize("change", ["modify", "untracked"])
def test_dirty_tree_refused_unless_allowed(repo, change):
    if change == "modify":
        (repo / "app.txt").write_text("v2\n")
    else:
        (repo / "new.txt").write_text("x\n")
    b = ImageBuilder(_cfg(), project_dir=repo)
    with pytest.raises(RefusedError, match="uncommitted changes") as ei:
        b.plan()
    assert "--allow-dirty" in str(ei.value)
    git, tags = b.plan(allow_dirty=True)
    assert git.dirty and tags == ("latest", f"sha-{git.sha}-dirty")


def test_not_a_repository(tmp_path):
    with pytest.raises(UsageError, match="git"):
        git_state(tmp_path)


def test_build_args():
    assert parse_build_args(["A=1", "B_2=x=y", "EMPTY="]) == {"A": "1", "B_2": "x=y", "EMPTY": ""}
    for bad in ["A", "=1", "1A=2", "A-B=1", "A B=1"]:
        with pytest.raises(UsageError):
            parse_build_args([bad])


def test_auth_config_from_docker_credentials():
    auths = {"auths": {"reg.test:5000": {"auth": base64.b64encode(b"tok-user:tok:pass").decode()}}}
    assert auth_config_for(auths, "reg.test:5000") == {
        "username": "tok-user", "password": "tok:pass", "serveraddress": "reg.test:5000",
    }
    assert auth_config_for(auths, "other") is None
    assert auth_config_for(None, "reg.test:5000") is None


class RecordingAPI:
    """Implements the APIClient calls the builder makes, with the engine's stream shapes."""

    def __init__(self, fail_build: str | None = None, fail_push: str | None = None):
        self.calls: list[tuple] = []
        self.fail_build = fail_build
        self.fail_push = fail_push

    def build(self, **kw):
        self.calls.append(("build", kw))
        yield {"stream": "Step 1/3 : ARG BASE\n"}
        yield {"stream": " ---> Running in abc\n"}
        if self.fail_build:
            yield {"error": self.fail_build, "errorDetail": {"message": self.fail_build}}
            return
        yield {"aux": {"ID": "sha256:" + "a" * 64}}

    def tag(self, image, repository, tag, force=False):
        self.calls.append(("tag", image, repository, tag))
        return True

    def push(self, repository, tag, stream, decode, auth_config):
        self.calls.append(("push", repository, tag, auth_config))
        yield {"status": f"The push refers to repository [{repository}]"}
        yield {"status": "Preparing", "progressDetail": {}, "id": "l1"}
        yield {"status": "Pushing", "progressDetail": {"current": 512, "total": 1024}, "id": "l1"}
        if self.fail_push:
            yield {"error": self.fail_push, "errorDetail": {"message": self.fail_push}}
            return
        yield {"status": "Pushed", "progressDetail": {}, "id": "l1"}
        yield {"status": f"{tag}: digest: sha256:{'b' * 64} size: 528"}
        yield {"progressDetail": {}, "aux": {"Tag": tag, "Digest": "sha256:" + "b" * 64, "Size": 528}}

    def inspect_image(self, ref):
        return {"Id": "sha256:" + "a" * 64}

    def close(self):
        pass


async def test_builder_builds_tags_and_pushes_with_events(repo):
    cfg = _cfg(build=BuildConfig(args={"BASE": "debian-base:12", "X": "cfg"}))
    api = RecordingAPI()
    events: list = []
    b = ImageBuilder(cfg, project_dir=repo, api=api)
    result = await b.build(build_args={"X": "cli"}, on_event=events.append)
    sha = result.git.sha
    kind, kw = api.calls[0]
    assert kind == "build"
    assert kw["path"] == str(repo) and kw["dockerfile"] == "Dockerfile"
    assert kw["buildargs"] == {"VERSION": f"sha-{sha}", "BASE": "debian-base:12", "X": "cli"}
    assert ("tag", "sha256:" + "a" * 64, "reg.test:5000/team/svc", "latest") in api.calls
    assert ("tag", "sha256:" + "a" * 64, "reg.test:5000/team/svc", f"sha-{sha}") in api.calls
    assert result.refs == ["reg.test:5000/team/svc:latest", f"reg.test:5000/team/svc:sha-{sha}"]
    await asyncio.sleep(0)  # events from the worker thread are delivered on the loop
    assert any(isinstance(e, BuildOutput) and e.line == "Step 1/3 : ARG BASE" for e in events)
    assert isinstance(events[-1], BuildFinished)

    creds = {"auths": {"reg.test:5000": {"auth": base64.b64encode(b"u:p").decode()}}}
    events.clear()
    pushed = await b.push(result, creds, on_event=events.append)
    await asyncio.sleep(0)
    pushes = [c for c in api.calls if c[0] == "push"]
    # The sha tag goes first; both with the read-write credentials.
    assert [c[2] for c in pushes] == [f"sha-{sha}", "latest"]
    assert all(c[3] == {"username": "u", "password": "p", "serveraddress": "reg.test:5000"} for c in pushes)
    layers = [e for e in events if isinstance(e, LayerProgress)]
    assert [(e.status, e.current, e.total) for e in layers[:3]] == [
        ("Preparing", None, None), ("Pushing", 512, 1024), ("Pushed", None, None),
    ]
    assert [e.ref for e in events if isinstance(e, PushFinished)] == [
        f"reg.test:5000/team/svc:sha-{sha}", "reg.test:5000/team/svc:latest",
    ]
    assert set(pushed.digests.values()) == {"sha256:" + "b" * 64}


async def test_builder_reports_engine_errors(repo):
    b = ImageBuilder(_cfg(), project_dir=repo, api=RecordingAPI(fail_build="failed to solve: no such file"))
    with pytest.raises(BuildError, match="failed to solve: no such file"):
        await b.build()
    b = ImageBuilder(_cfg(), project_dir=repo, api=RecordingAPI(fail_push="unauthorized: authentication required"))
    result = await b.build()
    with pytest.raises(BuildError, match="unauthorized"):
        await b.push(result, None)


async def test_dockerfile_outside_context_is_refused(repo):
    cfg = _cfg(build=BuildConfig(dockerfile="Dockerfile", context="sub"))
    (repo / "sub").mkdir()
    (repo / "sub" / "keep").write_text("")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "two")
    api = RecordingAPI()
    with pytest.raises(UsageError, match="outside the build context"):
        await ImageBuilder(cfg, project_dir=repo, api=api).build()
    assert api.calls == []


async def test_cli_build_refuses_dirty_tree_without_touching_docker(repo):
    (repo / "zdd.yaml").write_text("app: svc\n")
    _git(repo, "add", "zdd.yaml")
    _git(repo, "commit", "-q", "-m", "cfg")
    (repo / "app.txt").write_text("dirty\n")
    env = {**os.environ, "DOCKER_HOST": "unix:///nonexistent/docker.sock"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "zdd_tui", "build", "--config", str(repo / "zdd.yaml"),
        cwd=repo, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    _out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 4, err.decode()
    assert "uncommitted changes" in err.decode() and "--allow-dirty" in err.decode()
