"""Credentials against a real Secret Service (gnome-keyring on a private D-Bus session bus)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from zdd_tui import secrets
from zdd_tui.config import Config, SandboxConfig
from zdd_tui.secrets import CredentialsError

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
    secrets.set_token("prod", TOKEN_A)
    secrets.set_token("staging", TOKEN_B)
    assert _raw("prod:do-token") == TOKEN_A  # really in the Secret Service, under our service name
    assert secrets.get_token(None, "prod") == TOKEN_A
    assert secrets.get_token(Config(context="staging")) == TOKEN_B  # the config's context
    assert secrets.list_contexts() == ["prod", "staging"]

    secrets.set_token("prod", TOKEN_B)
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
    secrets.set_token("default", TOKEN_A)
    secrets.set_ssh_key("default", KEY_A)
    monkeypatch.setenv("DIGITALOCEAN_TOKEN", TOKEN_B)
    monkeypatch.setenv("ZDD_SSH_PRIVATE_KEY", KEY_B.rstrip("\n"))
    assert secrets.get_token(Config(), None) == TOKEN_B
    assert secrets.get_ssh_key("default") == KEY_B  # the trailing newline OpenSSH needs is restored


def test_env_override_works_without_any_keyring(monkeypatch, tmp_path):
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", f"unix:path={tmp_path}/no-bus")
    monkeypatch.setenv("DIGITALOCEAN_TOKEN", TOKEN_A)
    assert secrets.get_token(None, "default") == TOKEN_A


def test_sandbox_config_reads_the_state_dir_token(tmp_path, monkeypatch):
    monkeypatch.delenv("DIGITALOCEAN_TOKEN", raising=False)
    cfg = Config(runtime="sandbox", sandbox=SandboxConfig(state_dir=str(tmp_path)))
    with pytest.raises(CredentialsError, match=r"token file .* does not exist") as err:
        secrets.get_token(cfg)
    assert "zdd-tui sandbox up" in str(err.value)
    (tmp_path / "token").write_text("sandbox-token-123\n")
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
        lambda: secrets.set_token("default", TOKEN_A),
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
    code = f"from zdd_tui import secrets\nsecrets.set_token('default', {TOKEN_A!r})\n"
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
        secrets.set_token("default", TOKEN_A)
    assert TOKEN_A not in str(err.value) and TOKEN_A not in repr(err.value)
    assert "cannot store the DigitalOcean token in the keyring" in str(err.value)
    assert err.value.__cause__ is None


def test_invalid_context_and_token_shapes(keyring_env):
    with pytest.raises(CredentialsError, match="invalid context name"):
        secrets.set_token("a:b", TOKEN_A)
    with pytest.raises(CredentialsError, match="empty or contains whitespace") as err:
        secrets.set_token("default", TOKEN_A + " " + TOKEN_B)
    assert TOKEN_A not in str(err.value)
    assert _raw("default:do-token") is None
