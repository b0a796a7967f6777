"""Credentials against a real Secret Service (gnome-keyring on a private D-Bus session bus)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from zdd_tui import secrets
from zdd_tui.config import DEFAULT_API_URL, Config, DigitalOceanConfig, SandboxConfig
from zdd_tui.sandbox.statedir import StateDirError, claim
from zdd_tui.secrets import CredentialsError

DO = DEFAULT_API_URL

TOKEN_A = "dop_v1_" + "a1" * 32
TOKEN_B = "dop_v1_" + "b2" * 32
# Key-shaped text made at run time (never committed as such): only its shape matters here.
_PEM = "OPENSSH " + "PRIVATE KEY"
KEY_A = f"-----BEGIN {_PEM}-----\nAAAAkeyA\n-----END {_PEM}-----\n"
KEY_B = f"-----BEGIN {_PEM}-----\nBBBBkeyB\n-----END {_PEM}-----\n"


def _raw(user: str) -> str | None:
    """Read the Secret Service directly (not through zdd_tui.secrets) to see what is really stored."""
    import secretstorage
    from jeepney.io.blocking import open_dbus_connection

    with open_dbus_connection(os.environ["DBUS_SESSION_BUS_ADDRESS"]) as conn:
        items = list(secretstorage.search_items(conn, {"service": "zdd-tui", "username": user}))
        return items[0].get_secret().decode() if items else None


def test_the_keyring_is_the_secret_service(keyring_env):
    assert secrets.check_backend() == "keyring.backends.SecretService.Keyring"


def test_token_set_read_overwrite_delete_per_context(keyring_env):
    secrets.set_token("prod", TOKEN_A, api_url=DO)
    secrets.set_token("staging", TOKEN_B, api_url=DO)
    # really in the Secret Service, under our service name, with the URL it is bound to
    assert json.loads(_raw("prod:do-token")) == {"token": TOKEN_A, "api_url": DO}
    assert secrets.get_token(None, "prod") == TOKEN_A
    assert secrets.get_token(Config(context="staging")) == TOKEN_B  # the config's context
    assert secrets.list_contexts() == ["prod", "staging"]

    secrets.set_token("prod", TOKEN_B, api_url=DO)
    assert secrets.get_token(None, "prod") == TOKEN_B

    assert secrets.delete_token("prod") is True
    assert _raw("prod:do-token") is None
    assert secrets.delete_token("prod") is False
    assert secrets.get_token(None, "staging") == TOKEN_B  # the other context is untouched
    assert secrets.list_contexts() == ["staging"]
    with pytest.raises(CredentialsError) as err:
        secrets.get_token(None, "prod")
    assert "no DigitalOcean token for context 'prod'" in str(err.value)
    assert "zdd-tui login --context prod" in str(err.value)


def test_ssh_key_set_read_overwrite_delete_per_context(keyring_env):
    secrets.set_ssh_key("prod", KEY_A)
    secrets.set_ssh_key("other", KEY_B)
    assert _raw("prod:ssh-key") == KEY_A
    assert secrets.get_ssh_key("prod") == KEY_A
    secrets.set_ssh_key("prod", KEY_B)
    assert secrets.get_ssh_key("prod") == KEY_B
    assert secrets.delete_ssh_key("prod") is True
    assert secrets.get_ssh_key("other") == KEY_B
    assert secrets.list_contexts() == ["other"]
    with pytest.raises(CredentialsError, match="no SSH private key for context 'prod'"):
        secrets.get_ssh_key("prod")


def test_a_public_key_is_refused_and_nothing_stored(keyring_env):
    with pytest.raises(CredentialsError, match="not a private key"):
        secrets.set_ssh_key("prod", "ssh-ed25519 AAAAC3Nz... me@host")
    assert _raw("prod:ssh-key") is None


def test_env_overrides_win(keyring_env, monkeypatch):
    secrets.set_token("default", TOKEN_A, api_url=DO)
    secrets.set_ssh_key("default", KEY_A)
    monkeypatch.setenv("DIGITALOCEAN_TOKEN", TOKEN_B)
    monkeypatch.setenv("ZDD_SSH_PRIVATE_KEY", KEY_B.rstrip("\n"))
    assert secrets.get_token(Config(), None) == TOKEN_B
    assert secrets.get_ssh_key("default") == KEY_B  # the trailing newline OpenSSH needs is restored


def test_env_override_works_without_any_keyring(monkeypatch, tmp_path):
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", f"unix:path={tmp_path}/no-bus")
    monkeypatch.setenv("DIGITALOCEAN_TOKEN", TOKEN_A)
    assert secrets.get_token(None, "default") == TOKEN_A


def test_sandbox_config_reads_the_token_of_the_sandboxs_own_state_dir(tmp_path, monkeypatch):
    monkeypatch.delenv("DIGITALOCEAN_TOKEN", raising=False)
    state = tmp_path / "sb"
    cfg = _sandbox_cfg(state)
    with pytest.raises(StateDirError, match=r"state directory .* does not exist") as err:
        secrets.get_token(cfg)
    assert "zdd-tui sandbox up" in str(err.value)
    claim(state)  # as `zdd-tui sandbox up` does
    with pytest.raises(StateDirError, match=r"token file .* does not exist"):
        secrets.get_token(cfg)
    (state / "token").write_text("sandbox-token-123\n")
    (state / "token").chmod(0o600)
    assert secrets.get_token(cfg) == "sandbox-token-123"
    # A real token in the environment is never sent to the local stand-in.
    monkeypatch.setenv("DIGITALOCEAN_TOKEN", TOKEN_A)
    assert secrets.get_token(cfg) == "sandbox-token-123"


def _no_bus(monkeypatch, tmp_path):
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", f"unix:path={tmp_path}/nothing-listens-here")
    for key in ("DIGITALOCEAN_TOKEN", "ZDD_SSH_PRIVATE_KEY", "PYTHON_KEYRING_BACKEND"):
        monkeypatch.delenv(key, raising=False)


def test_no_backend_gives_the_precise_error_and_never_the_token(monkeypatch, tmp_path):
    _no_bus(monkeypatch, tmp_path)
    for call in (
        lambda: secrets.set_token("default", TOKEN_A, api_url=DO),
        lambda: secrets.set_ssh_key("default", KEY_A),
        lambda: secrets.get_token(None, "default"),
        lambda: secrets.check_backend(),
    ):
        with pytest.raises(CredentialsError) as err:
            call()
        text = str(err.value)
        assert "no usable OS keyring" in text
        assert "Secret Service is not reachable on the D-Bus session bus unix:path=" in text
        assert "nothing-listens-here" in text  # says which bus it tried
        assert "gnome-keyring-daemon" in text and "DIGITALOCEAN_TOKEN" in text  # how to fix it
        assert TOKEN_A not in text and "AAAAkeyA" not in text and TOKEN_A not in repr(err.value)
        assert err.value.__cause__ is None and err.value.__suppress_context__
        assert err.value.exit_code == 2


def test_no_session_bus_at_all(monkeypatch):
    monkeypatch.delenv("DBUS_SESSION_BUS_ADDRESS", raising=False)
    monkeypatch.delenv("PYTHON_KEYRING_BACKEND", raising=False)
    monkeypatch.delenv("DIGITALOCEAN_TOKEN", raising=False)
    with pytest.raises(CredentialsError, match=r"no D-Bus session bus \(DBUS_SESSION_BUS_ADDRESS is not set\)"):
        secrets.get_token(None, "default")


@pytest.mark.parametrize("backend", ["keyring.backends.fail.Keyring", "keyring.backends.null.Keyring"])
def test_forced_unusable_backend_in_a_fresh_process(tmp_path, backend):
    """keyring chooses its backend once per process: check the error in a process of its own.
    The null backend would silently discard the token: it is refused like the fail backend."""
    env = {k: v for k, v in os.environ.items() if k not in ("DIGITALOCEAN_TOKEN", "DBUS_SESSION_BUS_ADDRESS")}
    env["PYTHON_KEYRING_BACKEND"] = backend
    code = f"from zdd_tui import secrets\nsecrets.set_token('default', {TOKEN_A!r}, api_url={DO!r})\n"
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "CredentialsError: no usable OS keyring" in proc.stderr
    assert f"PYTHON_KEYRING_BACKEND={backend} cannot store anything" in proc.stderr
    assert TOKEN_A not in proc.stderr + proc.stdout  # not in the traceback either


def test_backend_failure_mid_operation_never_shows_the_token(keyring_env, monkeypatch):
    """A backend that fails while storing, quoting what it was given: the token is scrubbed."""
    import keyring.backends.SecretService as ss

    def broken(self, service, username, password):
        raise RuntimeError(f"org.freedesktop.DBus.Error.NoReply while storing {password}")

    monkeypatch.setattr(ss.Keyring, "set_password", broken)
    with pytest.raises(CredentialsError) as err:
        secrets.set_token("default", TOKEN_A, api_url=DO)
    assert TOKEN_A not in str(err.value) and TOKEN_A not in repr(err.value)
    assert "cannot store the DigitalOcean token in the keyring" in str(err.value)
    assert err.value.__cause__ is None


def test_invalid_context_and_token_shapes(keyring_env):
    with pytest.raises(CredentialsError, match="invalid context name"):
        secrets.set_token("a:b", TOKEN_A, api_url=DO)
    with pytest.raises(CredentialsError, match="empty or contains whitespace") as err:
        secrets.set_token("default", TOKEN_A + " " + TOKEN_B, api_url=DO)
    assert TOKEN_A not in str(err.value)
    assert _raw("default:do-token") is None


# ---- a token goes only to the API URL it is bound to (zdd.yaml cannot redirect it) ----------------

HOSTILE = ("https://api.digitalocean.com.evil.example", "https://evil.example/v2", "http://127.0.0.1:9")


def _cfg(api_url: str, context: str = "default") -> Config:
    return Config(context=context, digitalocean=DigitalOceanConfig(api_url=api_url))


def test_a_stored_token_goes_only_to_the_url_login_bound_it_to(keyring_env):
    secrets.set_token("prod", TOKEN_A, api_url=DO)
    for url in HOSTILE:
        with pytest.raises(CredentialsError) as err:
            secrets.get_token(_cfg(url, "prod"))
        text = str(err.value)
        assert f"only sent to {DO}" in text and repr(url) in text and "nothing was sent" in text
        assert f"zdd-tui login --context prod --api-url {url}" in text  # what to do if the URL is trusted
        assert TOKEN_A not in text + repr(err.value)
    # The same URL spelled otherwise is the same API.
    assert secrets.get_token(_cfg("https://API.DigitalOcean.com:443/", "prod")) == TOKEN_A
    # Binding to another URL is `login --api-url`'s: after it, only that URL gets the token.
    secrets.set_token("prod", TOKEN_A, api_url=HOSTILE[2])
    assert secrets.get_token(_cfg(HOSTILE[2], "prod")) == TOKEN_A
    with pytest.raises(CredentialsError, match=re.escape("only sent to http://127.0.0.1:9")):
        secrets.get_token(_cfg(DO, "prod"))


def test_a_token_stored_before_tokens_were_bound_counts_as_digitaloceans(keyring_env):
    import keyring

    keyring.get_keyring().set_password("zdd-tui", "old:do-token", TOKEN_B)  # a bare token, as stored before
    assert secrets.get_token(_cfg(DO, "old")) == TOKEN_B
    with pytest.raises(CredentialsError, match=re.escape("only sent to https://api.digitalocean.com")):
        secrets.get_token(_cfg(HOSTILE[0], "old"))


def test_the_environments_token_goes_to_digitalocean_or_to_ZDD_API_URL(monkeypatch):
    monkeypatch.setenv("DIGITALOCEAN_TOKEN", TOKEN_A)
    monkeypatch.delenv("ZDD_API_URL", raising=False)
    assert secrets.get_token(_cfg(DO)) == TOKEN_A
    for url in HOSTILE:
        with pytest.raises(CredentialsError) as err:
            secrets.get_token(_cfg(url))
        assert f"DIGITALOCEAN_TOKEN is only sent to {DO}" in str(err.value)
        assert f"ZDD_API_URL={url}" in str(err.value) and TOKEN_A not in str(err.value)
    # The operator's environment (never zdd.yaml) names another API.
    monkeypatch.setenv("ZDD_API_URL", HOSTILE[2])
    assert secrets.get_token(_cfg(HOSTILE[2])) == TOKEN_A
    with pytest.raises(CredentialsError, match=re.escape("only sent to http://127.0.0.1:9")):
        secrets.get_token(_cfg(DO))
    monkeypatch.setenv("ZDD_API_URL", "ftp://files.example")
    with pytest.raises(CredentialsError, match=re.escape("ZDD_API_URL='ftp://files.example' in the environment")):
        secrets.get_token(_cfg(DO))


# ---- the sandbox's token: only from the directory the sandbox made and marked ----------------------


def _sandbox_cfg(state) -> Config:
    return Config(runtime="sandbox", sandbox=SandboxConfig(state_dir=str(state)),
                  digitalocean=DigitalOceanConfig(api_url="http://127.0.0.1:8123"))


def _own_sandbox_dir(path):
    claim(path)
    (path / "token").write_text("sandbox-throwaway\n")
    (path / "token").chmod(0o600)
    return path


def _unmarked(tmp_path):  # a private directory that happens to hold a file named token
    d = tmp_path / "config-of-another-tool"
    d.mkdir(mode=0o700)
    (d / "token").write_text(TOKEN_A)
    (d / "token").chmod(0o600)
    return d


def _group_readable(tmp_path):
    d = _own_sandbox_dir(tmp_path / "sb")
    d.chmod(0o750)
    return d


def _symlinked_dir(tmp_path):
    _own_sandbox_dir(tmp_path / "sb")
    (tmp_path / "link").symlink_to(tmp_path / "sb")
    return tmp_path / "link"


def _symlinked_token(tmp_path):
    d = tmp_path / "sb"
    claim(d)
    (tmp_path / "secret").write_text(TOKEN_A)
    (tmp_path / "secret").chmod(0o600)
    (d / "token").symlink_to(tmp_path / "secret")
    return d


def _readable_marker(tmp_path):
    d = _own_sandbox_dir(tmp_path / "sb")
    (d / ".zdd-sandbox").chmod(0o644)
    return d


def _symlinked_marker(tmp_path):
    d = _own_sandbox_dir(tmp_path / "sb")
    (d / ".zdd-sandbox").rename(tmp_path / "marker")
    (d / ".zdd-sandbox").symlink_to(tmp_path / "marker")
    return d


@pytest.mark.parametrize("make,why", [
    (_unmarked, "not a sandbox's state directory"),
    (_group_readable, "mode is 0750, not owner-only"),
    (_symlinked_dir, "is a symlink or not a directory"),
    (_symlinked_token, "it is a symlink"),
    (_readable_marker, "cannot be the sandbox's marker: its mode is 0644"),
    (_symlinked_marker, "cannot be the sandbox's marker: a symlink"),
])
def test_a_sandbox_config_never_reads_a_token_outside_the_sandboxs_own_dir(tmp_path, monkeypatch, make, why):
    monkeypatch.delenv("DIGITALOCEAN_TOKEN", raising=False)
    state = make(tmp_path)
    with pytest.raises(StateDirError) as err:
        secrets.get_token(_sandbox_cfg(state))
    assert why in str(err.value) and TOKEN_A not in str(err.value)


def test_the_sandboxs_own_dir_is_read_for_a_loopback_api_only(tmp_path):
    state = _own_sandbox_dir(tmp_path / "sb")
    for url in ("http://127.0.0.1:8123", "http://localhost:8123", "http://[::1]:8123"):
        cfg = Config(runtime="sandbox", sandbox=SandboxConfig(state_dir=str(state)),
                     digitalocean=DigitalOceanConfig(api_url=url))
        assert secrets.get_token(cfg) == "sandbox-throwaway"
    for url in (*HOSTILE[:2], "http://10.0.0.5:8123"):
        cfg = Config(runtime="sandbox", sandbox=SandboxConfig(state_dir=str(state)),
                     digitalocean=DigitalOceanConfig(api_url=url))
        with pytest.raises(CredentialsError, match="the sandbox's token is only sent to the sandbox on this machine"):
            secrets.get_token(cfg)


def test_claim_makes_a_private_marked_dir_and_takes_no_foreign_token(tmp_path):
    import stat

    new = tmp_path / "a" / "sb"
    claim(new)
    assert stat.S_IMODE(new.stat().st_mode) == 0o700
    assert stat.S_IMODE((new / ".zdd-sandbox").stat().st_mode) == 0o600
    claim(new)  # again: already its own
    empty = tmp_path / "empty"
    empty.mkdir(mode=0o700)
    (empty / "sandbox.log").write_text("")  # the console opens its log there first
    claim(empty)
    assert (empty / ".zdd-sandbox").is_file()
    with pytest.raises(StateDirError, match="holds a file named token but is not marked"):
        claim(_unmarked(tmp_path))
    assert not (tmp_path / "config-of-another-tool" / ".zdd-sandbox").exists()
