"""Application secrets: names, fingerprints and labels; storage in a real Secret Service per
context; ZDD_SECRET_<NAME> taking precedence; the `secret` command; service.secrets in zdd.yaml."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import pytest

from zdd_tui import secrets
from zdd_tui.app_secrets import fingerprint, key_id, label_text, name_problem, parse_label, secret_env
from zdd_tui.cli import main
from zdd_tui.config import ConfigError, parse_config
from zdd_tui.secrets import CredentialsError


@pytest.mark.parametrize("name", ["DATABASE_URL", "_X", "a1", "Api_Key"])
def test_good_names(name):
    assert name_problem(name) is None


@pytest.mark.parametrize(("name", "why"), [
    ("", "empty"), ("1ABC", "cannot start with a digit"), ("A-B", "not '-'"), ("A B", "not ' '"),
    ("ZDD_PORT", "zdd-tui's own"), ("zdd_x", "zdd-tui's own"), ("É", "not 'É'"), ("A" * 129, "at most 128"),
])
def test_bad_names_are_refused_precisely(name, why):
    assert why in (name_problem(name) or "")


def test_fingerprints_are_keyed_short_and_the_label_holds_no_value():
    k1, k2 = b"1" * 32, b"2" * 32
    assert len(fingerprint(k1, "pw")) == 12 and fingerprint(k1, "pw") != fingerprint(k2, "pw")
    assert fingerprint(k1, "pw") != fingerprint(k1, "pw2")
    text = label_text(k1, {"B": "value-b", "A": "value-a"})
    assert text == f"key={key_id(k1)};A={fingerprint(k1, 'value-a')},B={fingerprint(k1, 'value-b')}"
    assert "value-" not in text
    parsed = parse_label(text)
    assert parsed is not None and parsed.key_id == key_id(k1) and set(parsed.fingerprints) == {"A", "B"}
    assert parse_label(None) is None and parse_label("something else") is None
    env = secret_env(k1, {"A": "value-a"})
    assert "value-a" not in repr(env) and env.scrub("dsn=value-a!") == "dsn=[secret A]!"


def test_service_secrets_in_zdd_yaml():
    cfg = parse_config("service:\n  secrets: [DATABASE_URL, API_TOKEN]\n"
                       "deploy:\n  release_command: [python, -m, app, migrate]\n")
    assert cfg.service.secrets == ("DATABASE_URL", "API_TOKEN")  # the key says "secrets", the names are not
    assert cfg.deploy.release_command == ("python", "-m", "app", "migrate")
    with pytest.raises(ConfigError) as err:
        parse_config("service:\n  env: {A: x}\n  port_env: PORT_X\n"
                     "  secrets: [1BAD, A, ZDD_X, B, B, PORT_X]\n")
    text = str(err.value)
    for i, want in enumerate(["cannot start with a digit", "not also in service.env", "zdd-tui's own",
                              None, "each name once", "other than service.port_env"]):
        if want:
            assert f"service.secrets[{i}]: expected" in text and want in text
    assert "service.secrets[3]: expected" not in text
    with pytest.raises(ConfigError, match="release_command: expected a list of strings"):
        parse_config("deploy:\n  release_command: python -m app migrate\n")


def test_secrets_per_context_in_the_secret_service(keyring_env, monkeypatch):
    secrets.set_app_secret("prod", "DB_PASSWORD", "p-1")
    secrets.set_app_secret("prod", "API_KEY", "a-1")
    secrets.set_app_secret("staging", "DB_PASSWORD", "s-1")
    assert list(secrets.list_app_secrets("prod")) == ["API_KEY", "DB_PASSWORD"]
    assert all(v.endswith("+00:00") for v in secrets.list_app_secrets("prod").values())  # when, never what
    assert secrets.get_app_secrets("prod", ("DB_PASSWORD", "NOPE")) == ({"DB_PASSWORD": "p-1"}, ["NOPE"])
    assert secrets.get_app_secrets("staging", ("DB_PASSWORD",)) == ({"DB_PASSWORD": "s-1"}, [])
    # CI: ZDD_SECRET_<NAME> takes precedence over the keyring.
    monkeypatch.setenv("ZDD_SECRET_DB_PASSWORD", "from-env")
    assert secrets.get_app_secrets("prod", ("DB_PASSWORD",)) == ({"DB_PASSWORD": "from-env"}, [])
    monkeypatch.delenv("ZDD_SECRET_DB_PASSWORD")
    key = secrets.secrets_key("prod")
    assert key is not None and len(key) == 32 and secrets.secrets_key("prod") == key  # made once, kept
    assert secrets.delete_app_secret("prod", "DB_PASSWORD") is True
    assert secrets.delete_app_secret("prod", "DB_PASSWORD") is False
    assert list(secrets.list_app_secrets("prod")) == ["API_KEY"]
    assert secrets.get_app_secrets("staging", ("DB_PASSWORD",))[0] == {"DB_PASSWORD": "s-1"}
    with pytest.raises(CredentialsError, match="invalid secret name 'A-B'"):
        secrets.set_app_secret("prod", "A-B", "x")
    with pytest.raises(CredentialsError, match="newline") as err:
        secrets.set_app_secret("prod", "MULTI", "line1\nline2")
    assert "line1" not in str(err.value)


def test_ci_without_a_keyring_uses_the_environment(monkeypatch):
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")
    monkeypatch.setenv("ZDD_SECRET_DB_PASSWORD", "from-env")
    # Every name from the environment: the keyring is never opened.
    assert secrets.get_app_secrets("default", ("DB_PASSWORD",)) == ({"DB_PASSWORD": "from-env"}, [])
    with pytest.raises(CredentialsError, match="no usable OS keyring"):
        secrets.get_app_secrets("default", ("DB_PASSWORD", "OTHER"))
    monkeypatch.setenv("ZDD_SECRETS_KEY", "ab" * 32)
    assert secrets.secrets_key("default") == bytes.fromhex("ab" * 32)
    assert "ZDD_SECRETS_KEY" not in secrets.without_credentials(dict(os.environ))


def _cli(monkeypatch, capsys, args: list[str], stdin: str = "") -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_secret_command(keyring_env, monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "zdd.yaml").write_text("context: shop\nservice:\n  secrets: [DB_PASSWORD, STRIPE_KEY]\n")
    code, out, err = _cli(monkeypatch, capsys, ["secret", "set", "DB_PASSWORD"], "hunter2-value\n")
    assert code == 0 and "stored secret DB_PASSWORD for context 'shop'" in err
    assert secrets.get_app_secrets("shop", ("DB_PASSWORD",))[0] == {"DB_PASSWORD": "hunter2-value"}  # no newline
    code, out, err = _cli(monkeypatch, capsys, ["secret", "list", "--json"])
    listed = json.loads(out)
    assert listed["missing"] == ["STRIPE_KEY"] and [r["name"] for r in listed["secrets"]] == ["DB_PASSWORD",
                                                                                              "STRIPE_KEY"]
    code, out, err = _cli(monkeypatch, capsys, ["secret", "list"])
    assert "DB_PASSWORD" in out and "STRIPE_KEY               NOT SET" in out
    assert "hunter2" not in out + err
    # Refusals: a bad name, no value, deleting without a terminal to confirm on.
    code, out, err = _cli(monkeypatch, capsys, ["secret", "set", "BAD-NAME"], "x\n")
    assert code == 2 and "invalid secret name 'BAD-NAME'" in err and "not '-'" in err
    code, out, err = _cli(monkeypatch, capsys, ["secret", "set", "EMPTY"], "\n")
    assert code == 2 and "no value given for EMPTY" in err
    code, out, err = _cli(monkeypatch, capsys, ["secret", "rm", "DB_PASSWORD"])
    assert code == 2 and "without confirmation" in err
    code, out, err = _cli(monkeypatch, capsys, ["secret", "rm", "DB_PASSWORD", "--yes"])
    assert code == 0 and secrets.list_app_secrets("shop") == {}


def test_a_value_is_never_an_argument():
    out = subprocess.run([sys.executable, "-m", "zdd_tui", "secret", "set", "A", "value"], capture_output=True,
                         text=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert out.returncode == 2 and "unrecognized arguments: value" in out.stderr
