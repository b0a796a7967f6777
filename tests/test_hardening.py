"""Smaller hardening: validators match whole values (a trailing newline is not a valid name), the
build context stays inside the project, the console's sandbox child inherits no credentials,
and no process of zdd-tui may write a core dump (it would hold the token in plain text)."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from zdd_tui.config import BuildConfig, Config, ConfigError, RegistryConfig, parse_config
from zdd_tui.errors import UsageError
from zdd_tui.hosts import argv
from zdd_tui.images.build import ImageBuilder
from zdd_tui.images.git import GitState
from zdd_tui.project.rollout import check_tag

# ---- whole-value validators ----------------------------------------------------------------------


@pytest.mark.parametrize("check,good", [
    (check_tag, "sha-abc1234"),
    (argv.check_state_name, "journal"),
    (argv.check_container_name, "app"),
    (argv.check_image_ref, "registry.digitalocean.com/team/app:sha-abc1234"),
    (argv.docker_image_digests_by_id, "sha256:" + "ab" * 32),
])
def test_a_trailing_newline_is_not_part_of_a_valid_value(check, good):
    check(good)
    for bad in (good + "\n", good + "\n; rm -rf /"):
        with pytest.raises((UsageError, ValueError)):
            check(bad)


async def test_the_sandbox_refuses_names_with_a_trailing_newline(tmp_path):
    from zdd_tui.sandbox.api import SandboxAPI
    from zdd_tui.sandbox.hosts import BadRequest, LocalHost

    host = LocalHost("web-1", 1, "127.0.0.1", tmp_path, service_port=8080, admin_port=9090,
                     lookup=lambda repo, tag: None)
    with pytest.raises(BadRequest):
        host.state_read("lock\n")

    api = SandboxAPI(None, "t0ken", activation_delay=0.0)
    await api.start()
    try:
        async with httpx.AsyncClient(base_url=api.url, headers={"Authorization": "Bearer t0ken"}) as c:
            body = {"size": "s-1vcpu-1gb", "image": "debian-12-x64", "region": "nyc3"}
            bad = await c.post("/v2/droplets", json={**body, "name": "web-1\n"})
            assert bad.status_code == 422, bad.text
            assert api.state.droplets() == []
            good = await c.post("/v2/droplets", json={**body, "name": "web-1"})
            assert good.status_code == 202, good.text
    finally:
        await api.stop()


# ---- build.context ---------------------------------------------------------------------------------


@pytest.mark.parametrize("context", ["/", "/etc", "~", "~/src", "..", "../other", "src/../../etc", "src\\..\\.."])
def test_build_context_outside_the_project_is_a_config_error(context):
    with pytest.raises(ConfigError) as err:
        parse_config(f"build:\n  context: '{context}'\n")
    assert ":2:" in str(err.value) and "build.context: expected a path inside the project" in str(err.value)


def test_build_context_inside_the_project_is_fine():
    for context in (".", "service", "./service", "a/b"):
        assert parse_config(f"build:\n  context: '{context}'\n").build.context == context


class NoDocker:
    """A Docker API that must not be used: any call fails the test."""

    def __getattr__(self, name):
        raise AssertionError(f"the Docker daemon was asked: {name}")


async def test_a_symlink_cannot_take_the_build_context_out_of_the_project(tmp_path):
    outside = tmp_path / "home"
    outside.mkdir()
    (outside / "Dockerfile").write_text("FROM scratch\n")
    (outside / "id_ed25519").write_text("private\n")
    project = tmp_path / "project"
    project.mkdir()
    (project / "ctx").symlink_to(outside)
    cfg = Config(registry=RegistryConfig(server="reg.test:5000", name="team", repository="svc"),
                 build=BuildConfig(context="ctx", dockerfile="ctx/Dockerfile"))
    builder = ImageBuilder(cfg, project_dir=project, api=NoDocker())  # type: ignore[arg-type]
    with pytest.raises(ConfigError) as err:
        await builder.build(git=GitState("abc1234", False))
    assert "build.context: expected a directory inside the project" in str(err.value)
    assert "'ctx'" in str(err.value) and "nothing was sent" in str(err.value)


# ---- the console's sandbox child --------------------------------------------------------------------


def _raised_core_limit() -> tuple[int, int]:
    """Let this process (and so its children) dump core, as an operator's shell may: the
    children must lower it themselves. Returns the limits to restore."""
    soft, hard = resource.getrlimit(resource.RLIMIT_CORE)
    if hard == 0:
        pytest.skip("core dumps are impossible here (hard limit 0): nothing to show")
    resource.setrlimit(resource.RLIMIT_CORE, (hard, hard))
    return soft, hard


def _core_limit_of(pid: int) -> str:
    line = next(x for x in Path(f"/proc/{pid}/limits").read_text().splitlines() if x.startswith("Max core file size"))
    return line.split()[4]  # the soft limit


@pytest.mark.slow  # a sandbox child
def test_the_sandbox_child_inherits_no_credentials_and_dumps_no_core(monkeypatch, tmp_path):
    from zdd_tui.ui.sandbox_proc import start_sandbox

    secret_vars = {"DIGITALOCEAN_TOKEN": "dop_v1_" + "f6" * 32, "ZDD_SSH_PRIVATE_KEY": "key-text",
                   "ZDD_SECRET_DATABASE_URL": "postgres://app:hunter2@db/app"}
    for k, v in secret_vars.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    before = _raised_core_limit()
    try:
        sp = start_sandbox(hosts=1)
    finally:
        resource.setrlimit(resource.RLIMIT_CORE, before)
    try:
        environ = Path(f"/proc/{sp.pid}/environ").read_bytes().split(b"\0")
        names = {e.split(b"=", 1)[0].decode() for e in environ if e}
        assert "PATH" in names  # the rest of the environment is there
        assert not names & set(secret_vars), names & set(secret_vars)
        assert not any(v.encode() in e for e in environ for v in secret_vars.values())
        assert _core_limit_of(sp.pid) == "0"
    finally:
        sp.stop()


@pytest.mark.slow  # a sandbox child
def test_a_sandbox_child_that_refuses_its_state_dir_says_why(tmp_path):
    """A state directory other users can read is refused, and the console reports the child's own
    words at once rather than a start timeout."""
    from zdd_tui.errors import ZddError
    from zdd_tui.ui.sandbox_proc import start_sandbox

    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o755)
    with pytest.raises(ZddError) as e:
        start_sandbox(hosts=1, state_dir=shared)
    assert "exited with code 2" in str(e.value) and "not private" in str(e.value), str(e.value)
    assert not (shared / "token").exists()


def test_zdd_tui_lowers_the_core_limit_at_start(tmp_path):
    code = (
        "import resource\n"
        "from zdd_tui.cli import main\n"
        "before = resource.getrlimit(resource.RLIMIT_CORE)[0]\n"
        "main(['--config', 'nope.yaml', 'status'])\n"
        "print(before, resource.getrlimit(resource.RLIMIT_CORE)[0])\n"
    )
    hard = resource.getrlimit(resource.RLIMIT_CORE)[1]
    if hard == 0:
        pytest.skip("core dumps are impossible here (hard limit 0): nothing to show")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                          preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_CORE, (hard, hard)),
                          env={**os.environ})
    before, after = proc.stdout.split()
    assert int(before) != 0 and int(after) == 0, proc.stderr
