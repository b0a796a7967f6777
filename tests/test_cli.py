"""The commands as an operator runs them: subprocesses of `python -m zdd_tui`.

login/logout run against the real Secret Service of `keyring_env` and a local DigitalOcean
stand-in (aiohttp on 127.0.0.1) that answers GET /v2/account.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from aiohttp import web

from zdd_tui import secrets
from zdd_tui.config import load_config

from corpus import corpus_dir

CONFIGS = corpus_dir()
EXPECTED = yaml.safe_load((CONFIGS / "expected.yaml").read_text())
GOOD_TOKEN = "dop_v1_" + "c3" * 32
BAD_TOKEN = "dop_v1_" + "d4" * 32


def zdd(*args: str, cwd: Path | None = None, env: dict | None = None, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "zdd_tui", *args],
        cwd=cwd, env=env, input=stdin, capture_output=True, text=True, timeout=120,
    )


async def azdd(*args: str, cwd: Path, env: dict, stdin: str = "") -> tuple[int, str, str]:
    """Run zdd-tui without blocking the event loop (the test's API server runs on it)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "zdd_tui", *args, cwd=cwd, env=env,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin.encode()), 120)
    return proc.returncode, out.decode(), err.decode()


# ---- config corpus and init ---------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_bad_config_exits_2_with_its_precise_error(name, tmp_path, monkeypatch, capsys):
    """Through the CLI entry point in-process (a subprocess per file costs seconds of imports)."""
    from zdd_tui.cli import main

    line, key, expected, found = EXPECTED[name]
    monkeypatch.chdir(tmp_path)
    assert main(["login", "--config", str(CONFIGS / name), "--token-stdin"]) == 2
    captured = capsys.readouterr()
    first = captured.err.splitlines()[0]
    assert first.startswith(f"zdd-tui: error: {CONFIGS / name}:{line}:")
    assert f": {key}: expected " in first and expected in first and found in first
    assert captured.out == ""


@pytest.mark.parametrize("name", ["malformed.yaml", "token-key.yaml", "out-of-range-threshold.yaml"])
def test_bad_config_as_a_real_process(name, tmp_path):
    line = EXPECTED[name][0]
    env = {k: v for k, v in os.environ.items() if k != "DIGITALOCEAN_TOKEN"}
    proc = zdd("login", "--config", str(CONFIGS / name), "--token-stdin", cwd=tmp_path, env=env, stdin=GOOD_TOKEN)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith(f"zdd-tui: error: {CONFIGS / name}:{line}:")
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert "0123456789abcdef" not in proc.stderr  # token-key.yaml's token is not echoed


def test_missing_config_names_the_file_and_suggests_init(tmp_path):
    proc = zdd("login", "--config", "nope.yaml", "--token-stdin", cwd=tmp_path)
    assert proc.returncode == 2
    assert "zdd-tui: error: nope.yaml: no such file" in proc.stderr and "run `zdd-tui init`" in proc.stderr


@pytest.mark.slow  # several zdd-tui processes
def test_init_writes_a_config_that_loads_and_never_overwrites(tmp_path):
    project = tmp_path / "Shop API"
    project.mkdir()
    proc = zdd("init", cwd=project)
    assert proc.returncode == 0, proc.stderr
    path = project / "zdd.yaml"
    cfg = load_config(path)
    assert cfg.app == "shop-api" and cfg.load_balancer.name == "shop-api-lb"
    text = path.read_text()
    assert "# No secrets here" in text and "unhealthy_threshold: 3  # failed checks" in text

    path.write_text(text + "# my edit\n")
    again = zdd("init", cwd=project)
    assert again.returncode == 4 and "zdd.yaml already exists; nothing was written" in again.stderr
    assert path.read_text().endswith("# my edit\n")  # untouched
    forced = zdd("init", "--force", cwd=project)
    assert forced.returncode == 0 and path.read_text() == text

    other = zdd("--config", "other.yaml", "init", cwd=project)  # the top-level --config is honoured too
    assert other.returncode == 0 and load_config(project / "other.yaml") == cfg


def test_unknown_command_is_a_usage_error():
    proc = zdd("logni")
    assert proc.returncode == 2 and "unknown command 'logni'. Did you mean 'login'?" in proc.stderr


def test_command_modules_load_only_when_used_and_the_help_registry_matches_them():
    """`zdd-tui --help` lists COMMAND_HELP without importing the commands; each line is its
    module's own help, and a command's module is imported when that command is parsed."""
    code = (
        "import sys, zdd_tui.cli as c\n"
        "p = c.build_parser(); p.format_help()\n"
        "assert not [m for m in sys.modules if m.startswith('zdd_tui.commands.')], sys.modules\n"
        "lazy = p.format_help()\n"
        "a = p.parse_args(['status', '--no-hosts'])\n"
        "assert a.no_hosts and callable(a.func) and 'zdd_tui.commands.status' in sys.modules\n"
        "assert 'zdd_tui.commands.deploy' not in sys.modules\n"
        "assert p.format_help() == lazy == c.build_parser(eager=True).format_help()\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    from zdd_tui.cli import COMMAND_HELP, build_parser

    sub = next(a for a in build_parser(eager=True)._actions if a.dest == "command")
    assert {a.dest: a.help for a in sub._choices_actions} == COMMAND_HELP


# ---- login / logout -----------------------------------------------------------------------------


class FakeDO:
    """GET /v2/account in DigitalOcean's shapes: 200 for GOOD_TOKEN, 401 {id, message, request_id} else."""

    def __init__(self):
        self.seen: list[str] = []
        self.url = ""

    async def account(self, request: web.Request) -> web.Response:
        auth = request.headers.get("Authorization", "")
        self.seen.append(auth)
        if auth == f"Bearer {GOOD_TOKEN}":
            return web.json_response({"account": {"email": "ops@example.com", "uuid": "u-1", "status": "active",
                                                  "droplet_limit": 25, "email_verified": True}})
        return web.json_response(
            {"id": "unauthorized", "message": "Unable to authenticate you", "request_id": "req-4f2a9c"}, status=401
        )


@pytest.fixture
async def fake_do():
    api = FakeDO()
    app = web.Application()
    app.router.add_get("/v2/account", api.account)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    api.url = f"http://127.0.0.1:{port}"
    yield api
    await runner.cleanup()


async def test_login_with_a_rejected_token_stores_nothing_and_says_why(keyring_env, fake_do, tmp_path):
    code, out, err = await azdd("login", "--token-stdin", "--api-url", fake_do.url, "--context", "prod",
                                cwd=tmp_path, env=keyring_env, stdin=BAD_TOKEN + "\n")
    assert code == 2, err
    assert fake_do.seen == [f"Bearer {BAD_TOKEN}"]  # it really asked the API, with that token
    assert "the token was rejected, nothing was stored" in err
    assert "401: Unable to authenticate you" in err and "request id req-4f2a9c" in err
    assert BAD_TOKEN not in out + err and BAD_TOKEN[7:20] not in out + err
    assert not secrets.has_token("prod") and secrets.list_contexts() == []


@pytest.mark.slow  # several zdd-tui processes
async def test_login_stores_a_good_token_in_the_keyring(keyring_env, fake_do, tmp_path):
    (tmp_path / "zdd.yaml").write_text(f"context: staging\ndigitalocean:\n  api_url: {fake_do.url}\n")
    env = {**keyring_env, "ZDD_API_URL": fake_do.url}  # without --api-url: the operator's API (not zdd.yaml's)
    code, out, err = await azdd("login", "--token-stdin", "--json", cwd=tmp_path, env=env, stdin=GOOD_TOKEN)
    assert code == 0, err
    assert json.loads(out) == {
        "context": "staging", "api_url": fake_do.url, "email": "ops@example.com", "status": "active",
    }
    assert GOOD_TOKEN not in out + err
    assert secrets.stored_token("staging") == secrets.StoredToken(GOOD_TOKEN, fake_do.url)

    # overwrite with a rejected one: the good token stays
    code, _, err = await azdd("login", "--token-stdin", cwd=tmp_path, env=env, stdin=BAD_TOKEN)
    assert code == 2 and secrets.stored_token("staging") == secrets.StoredToken(GOOD_TOKEN, fake_do.url)


async def test_login_without_a_keyring_fails_before_asking_for_the_token(fake_do, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DIGITALOCEAN_TOKEN", "PYTHON_KEYRING_BACKEND")}
    env["DBUS_SESSION_BUS_ADDRESS"] = f"unix:path={tmp_path}/no-bus-here"
    code, out, err = await azdd("login", "--token-stdin", "--api-url", fake_do.url, cwd=tmp_path, env=env,
                                stdin=GOOD_TOKEN)
    assert code == 2
    assert "zdd-tui: error: no usable OS keyring for zdd-tui's credentials" in err
    assert "no-bus-here" in err and "gnome-keyring-daemon" in err and "DIGITALOCEAN_TOKEN" in err
    assert fake_do.seen == [] and GOOD_TOKEN not in out + err


def test_login_needs_a_terminal_or_token_stdin(keyring_env, tmp_path):
    proc = zdd("login", "--api-url", "http://127.0.0.1:9", cwd=tmp_path, env=keyring_env)
    assert proc.returncode == 2 and "no terminal to ask for the token" in proc.stderr and "--token-stdin" in proc.stderr


@pytest.mark.slow  # several zdd-tui processes
def test_login_ssh_key_and_logout(keyring_env, tmp_path):
    import asyncssh

    key_text = asyncssh.generate_private_key("ssh-ed25519").export_private_key().decode()
    (tmp_path / "id").write_text(key_text)
    (tmp_path / "id.pub").write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI me@host\n")

    bad = zdd("login", "--ssh-key", "id.pub", "--context", "prod", cwd=tmp_path, env=keyring_env)
    assert bad.returncode == 2 and "id.pub cannot be used as the hosts' SSH key" in bad.stderr
    assert not secrets.has_ssh_key("prod")

    ok = zdd("login", "--ssh-key", "id", "--context", "prod", cwd=tmp_path, env=keyring_env)
    assert ok.returncode == 0, ok.stderr
    assert "ssh-ed25519" in ok.stdout and "PRIVATE KEY" not in ok.stdout + ok.stderr
    assert secrets.get_ssh_key("prod") == key_text
    secrets.set_token("prod", GOOD_TOKEN, api_url="https://api.digitalocean.com")

    unconfirmed = zdd("logout", "--context", "prod", cwd=tmp_path, env=keyring_env)
    assert unconfirmed.returncode == 2 and "pass --yes" in unconfirmed.stderr
    assert secrets.has_token("prod") and secrets.has_ssh_key("prod")

    out = zdd("logout", "--context", "prod", "--yes", "--json", cwd=tmp_path, env=keyring_env)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"context": "prod", "removed": ["do-token", "ssh-key"]}
    assert not secrets.has_token("prod") and not secrets.has_ssh_key("prod") and secrets.list_contexts() == []

    again = zdd("logout", "--context", "prod", "--yes", cwd=tmp_path, env=keyring_env)
    assert again.returncode == 0 and "nothing was stored for context 'prod'" in again.stdout


@pytest.mark.slow  # a zdd-tui process on a pseudo-terminal
async def test_login_prompts_with_a_masked_prompt_on_a_terminal(keyring_env, fake_do, tmp_path):
    pexpect = pytest.importorskip("pexpect", reason="pexpect drives the masked prompt on a pseudo-terminal")

    def session() -> tuple[int, str]:
        child = pexpect.spawn(sys.executable, ["-m", "zdd_tui", "login", "--api-url", fake_do.url, "--context", "tty"],
                              cwd=str(tmp_path), env=keyring_env, encoding="utf-8", timeout=60)
        child.expect_exact("DigitalOcean token (input hidden): ")
        child.sendline(GOOD_TOKEN)
        child.expect(pexpect.EOF)
        seen = (child.before or "")
        child.close()
        return child.exitstatus, seen

    status, seen = await asyncio.to_thread(session)
    assert status == 0, seen
    assert "logged in: context 'tty' is ops@example.com" in seen
    assert GOOD_TOKEN not in seen  # not echoed by the terminal, not printed
    assert secrets.stored_token("tty") == secrets.StoredToken(GOOD_TOKEN, fake_do.url)
