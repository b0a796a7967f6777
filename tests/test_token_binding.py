"""A hostile zdd.yaml (committed, so anyone's) points digitalocean.api_url at a server it controls:
the real token must never reach it. The server here is a loopback stand-in that records every
request; the commands run as the operator runs them (subprocesses), the keyring is the real
Secret Service of `keyring_env`."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest
from aiohttp import web

from zdd_tui import secrets
from zdd_tui.config import DEFAULT_API_URL, Config, DigitalOceanConfig
from zdd_tui.errors import UsageError
from zdd_tui.setup.steps import Setup

TOKEN = "dop_v1_" + "e5" * 32


class Recorder:
    """Records (method, path, Authorization) of every request; answers /v2/account for any token."""

    def __init__(self):
        self.seen: list[tuple[str, str, str]] = []
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.seen.append((request.method, request.path, request.headers.get("Authorization", "")))
        if request.path == "/v2/account":
            return web.json_response({"account": {"email": "ops@example.com", "uuid": "u-1", "status": "active",
                                                  "droplet_limit": 25, "email_verified": True}})
        return web.json_response({"id": "unauthorized", "message": "no", "request_id": "r-1"}, status=401)

    @property
    def bearers(self) -> list[str]:
        return [auth for _, _, auth in self.seen if auth]


async def _serve(rec: Recorder):
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", rec.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    rec.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"
    return runner


@pytest.fixture
async def hostile():
    rec = Recorder()
    runner = await _serve(rec)
    yield rec
    await runner.cleanup()


@pytest.fixture
async def trusted():
    rec = Recorder()
    runner = await _serve(rec)
    yield rec
    await runner.cleanup()


async def zdd(*args: str, cwd: Path, env: dict, stdin: str = "") -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "zdd_tui", *args, cwd=cwd, env=env,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin.encode()), 120)
    return proc.returncode, out.decode(), err.decode()


def _project(tmp_path: Path, api_url: str, extra: str = "") -> Path:
    (tmp_path / "zdd.yaml").write_text(f"app: shop\ndigitalocean:\n  api_url: {api_url}\n{extra}")
    return tmp_path


def _clean_env(base: dict | None = None) -> dict:
    env = dict(base if base is not None else os.environ)
    for k in ("DIGITALOCEAN_TOKEN", "ZDD_API_URL", "ZDD_SSH_PRIVATE_KEY"):
        env.pop(k, None)
    return env


async def test_status_never_sends_the_stored_token_where_zdd_yaml_points(keyring_env, hostile, trusted, tmp_path):
    secrets.set_token("default", TOKEN, api_url=DEFAULT_API_URL)  # as `zdd-tui login` stores it by default
    code, out, err = await zdd("status", "--no-hosts", cwd=_project(tmp_path, hostile.url), env=_clean_env(keyring_env))
    assert code == 2, err
    assert hostile.seen == []  # no request at all, so no Authorization header either
    assert "the token of context 'default'" in err and f"only sent to {DEFAULT_API_URL}" in err
    assert f"zdd-tui login --context default --api-url {hostile.url}" in err
    assert TOKEN not in out + err and "Traceback" not in err

    # A token bound (by login) to a URL is sent there: the recorder would have seen it.
    secrets.set_token("default", TOKEN, api_url=trusted.url)
    await zdd("status", "--no-hosts", cwd=_project(tmp_path, trusted.url), env=_clean_env(keyring_env))
    assert trusted.bearers and set(trusted.bearers) == {f"Bearer {TOKEN}"}
    assert hostile.seen == []


async def test_status_never_sends_DIGITALOCEAN_TOKEN_where_zdd_yaml_points(hostile, tmp_path):
    env = {**_clean_env(), "DIGITALOCEAN_TOKEN": TOKEN}
    code, out, err = await zdd("status", "--no-hosts", cwd=_project(tmp_path, hostile.url), env=env)
    assert code == 2, err
    assert hostile.seen == []
    assert f"DIGITALOCEAN_TOKEN is only sent to {DEFAULT_API_URL}" in err and f"ZDD_API_URL={hostile.url}" in err
    assert TOKEN not in out + err

    # The operator's own environment may name the API (the file never can).
    await zdd("status", "--no-hosts", cwd=tmp_path, env={**env, "ZDD_API_URL": hostile.url})
    assert set(hostile.bearers) == {f"Bearer {TOKEN}"}


async def test_status_never_reads_a_token_file_the_sandbox_did_not_make(hostile, tmp_path):
    foreign = tmp_path / "some-tool"  # private, owned by the operator, holding a file named token
    foreign.mkdir(mode=0o700)
    (foreign / "token").write_text(TOKEN)
    (foreign / "token").chmod(0o600)
    project = tmp_path / "repo"
    project.mkdir()
    _project(project, hostile.url, f"runtime: sandbox\nsandbox:\n  state_dir: {foreign}\n")
    code, out, err = await zdd("status", "--no-hosts", cwd=project, env={**_clean_env(), "DIGITALOCEAN_TOKEN": TOKEN})
    assert code == 2, err
    assert hostile.seen == []
    assert f"{foreign} is not a sandbox's state directory" in err and TOKEN not in out + err


async def test_login_in_a_hostile_project_checks_the_token_at_the_operators_api(keyring_env, hostile, trusted,
                                                                                 tmp_path):
    env = {**_clean_env(keyring_env), "ZDD_API_URL": trusted.url}
    code, _, err = await zdd("login", "--token-stdin", cwd=_project(tmp_path, hostile.url), env=env, stdin=TOKEN)
    assert code == 0, err
    assert hostile.seen == [] and trusted.bearers == [f"Bearer {TOKEN}"]
    assert secrets.stored_token("default") == secrets.StoredToken(TOKEN, trusted.url)
    assert f"says digitalocean.api_url: {hostile.url!r}; this token is bound to {trusted.url}" in err

    # --api-url binds it to that URL (the operator's explicit choice, after checking it there).
    code, _, err = await zdd("login", "--token-stdin", "--api-url", hostile.url, cwd=tmp_path, env=env, stdin=TOKEN)
    assert code == 0, err
    assert hostile.bearers == [f"Bearer {TOKEN}"]
    assert secrets.stored_token("default") == secrets.StoredToken(TOKEN, hostile.url)


async def test_a_token_typed_into_setup_is_not_sent_where_zdd_yaml_points(memkeyring, hostile, monkeypatch):
    monkeypatch.delenv("ZDD_API_URL", raising=False)
    cfg = Config(app="shop", digitalocean=DigitalOceanConfig(api_url=hostile.url))
    async with Setup(cfg, token=TOKEN) as setup:
        with pytest.raises(UsageError) as err:
            await setup.apply("token")
    assert "a token typed here is only sent to https://api.digitalocean.com" in str(err.value)
    assert hostile.seen == [] and memkeyring.items == {}
    # With the operator's consent (the environment), the same step checks and stores it.
    monkeypatch.setenv("ZDD_API_URL", hostile.url)
    async with Setup(cfg, token=TOKEN) as setup:
        await setup.apply("token")
    assert hostile.bearers == [f"Bearer {TOKEN}"]
    assert secrets.stored_token("default") == secrets.StoredToken(TOKEN, hostile.url)
