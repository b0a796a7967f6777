"""Credentials: the DigitalOcean token and the SSH private key, in the OS keyring, per context.

Keyring service "zdd-tui"; users "<context>:do-token" and "<context>:ssh-key" (a context is a
named DigitalOcean account, like doctl's). CI overrides with DIGITALOCEAN_TOKEN and
ZDD_SSH_PRIVATE_KEY (the key's text). There is deliberately no plain-file fallback: without a
usable keyring backend every call raises CredentialsError saying what is missing and how to fix it.

A token is sent only to the API URL it is bound to, whatever zdd.yaml says (zdd.yaml is committed
and may come from anyone): a stored token to the URL `zdd-tui login` checked it against (kept in
the same keyring entry), DIGITALOCEAN_TOKEN to ZDD_API_URL from the environment, else to
DigitalOcean's. A sandbox config reads `<sandbox.state_dir>/token`, a throwaway local token, and
only from a directory the sandbox made and marked as its own (zdd_tui.sandbox.statedir).
No message built here contains a secret: errors from backends are reduced to their type and a
text scrubbed of the secret, and are never chained (a traceback would show their text).
"""

from __future__ import annotations

import ipaddress
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from zdd_tui.config import DEFAULT_API_URL, Config, api_url_problem
from zdd_tui.errors import UsageError

if TYPE_CHECKING:
    import keyring.backend

# keyring (and its backends' imports, ~45 ms) is imported where a keyring is used: a sandbox
# config or the environment variables need none, and the console starts faster without it.

SERVICE = "zdd-tui"
TOKEN_ENV = "DIGITALOCEAN_TOKEN"
SSH_KEY_ENV = "ZDD_SSH_PRIVATE_KEY"
API_URL_ENV = "ZDD_API_URL"  # where DIGITALOCEAN_TOKEN (or a token not yet bound) may be sent
_INDEX_USER = "contexts"  # a non-secret entry listing the contexts that hold credentials
_CI_HINT = f"in CI or on a headless server without a keyring, set {TOKEN_ENV} and {SSH_KEY_ENV} instead"


class CredentialsError(UsageError):
    """A credential is missing or the keyring cannot be used. Never contains a secret."""


def _token_user(context: str) -> str:
    return f"{context}:do-token"


def _ssh_user(context: str) -> str:
    return f"{context}:ssh-key"


def _usable(kr: keyring.backend.KeyringBackend) -> bool:
    from keyring.backends import chainer, fail, null

    if isinstance(kr, (fail.Keyring, null.Keyring)):  # null "stores" by discarding: never usable
        return False
    if isinstance(kr, chainer.ChainerBackend) and not kr.backends:
        return False
    return True


def _why_no_secret_service() -> str:
    """Why the freedesktop Secret Service (the Linux keyring) is not usable, as precisely as we can."""
    if not os.environ.get("DBUS_SESSION_BUS_ADDRESS"):
        return "there is no D-Bus session bus (DBUS_SESSION_BUS_ADDRESS is not set)"
    try:
        from keyring.backends import SecretService

        SecretService.Keyring.priority  # noqa: B018 (raises with the reason when not viable)
    except Exception as exc:  # noqa: BLE001 - the backend reports its reason as an exception, of any type
        address = os.environ["DBUS_SESSION_BUS_ADDRESS"]
        return f"the Secret Service is not reachable on the D-Bus session bus {address}: {exc}"
    return "no keyring backend was selected"


def _secret_service_gone() -> str | None:
    """Why the Secret Service cannot be used now, if the keyring in use is the Secret Service."""
    import keyring
    from keyring.backends import SecretService

    if not isinstance(keyring.get_keyring(), SecretService.Keyring):
        return None
    reason = _why_no_secret_service()
    return None if reason == "no keyring backend was selected" else reason


def _no_backend_error(reason: str) -> CredentialsError:
    return CredentialsError(
        f"no usable OS keyring for zdd-tui's credentials: {reason}",
        "start a Secret Service in your session (e.g. gnome-keyring-daemon --unlock --components=secrets, "
        "inside a D-Bus session: dbus-run-session), or use another keyring backend via "
        f"PYTHON_KEYRING_BACKEND; {_CI_HINT}. zdd-tui never stores credentials in a plain file",
    )


def _keyring() -> keyring.backend.KeyringBackend:
    """The keyring backend to use now, or CredentialsError.

    keyring picks its backend once per process; the session bus may have appeared since (a
    test's private Secret Service), so a fail backend gets one more look at the Secret Service.
    """
    import keyring
    import keyring.core

    kr = keyring.core.load_env() or keyring.get_keyring()
    if _usable(kr):
        return kr
    if os.environ.get("PYTHON_KEYRING_BACKEND"):
        raise _no_backend_error(f"PYTHON_KEYRING_BACKEND={os.environ['PYTHON_KEYRING_BACKEND']} cannot store anything")
    try:
        from keyring.backends import SecretService

        SecretService.Keyring.priority  # noqa: B018
        return SecretService.Keyring()
    except Exception:  # noqa: BLE001 - not viable, for whatever reason: _why_no_secret_service says it
        raise _no_backend_error(_why_no_secret_service()) from None


def _scrub(text: str, secret: str | None) -> str:
    return text.replace(secret, "[secret]") if secret else text


def _backend_error(action: str, exc: Exception, secret: str | None = None) -> CredentialsError:
    import keyring.errors

    name = type(exc).__name__
    if isinstance(exc, keyring.errors.KeyringLocked) or "locked" in str(exc).lower():
        return CredentialsError(
            f"cannot {action}: the keyring is locked",
            "unlock your login keyring (log in to the desktop session, or start gnome-keyring-daemon --unlock); "
            + _CI_HINT,
        )
    if isinstance(exc, keyring.errors.NoKeyringError):
        return _no_backend_error(_why_no_secret_service())
    reason = _secret_service_gone()
    if reason:  # the backend was chosen while a session bus was there; it has gone since
        return _no_backend_error(reason)
    reason = f"{name}: {_scrub(str(exc), secret)}"
    return CredentialsError(
        f"cannot {action}: the OS keyring failed ({reason})",
        "check that the Secret Service (gnome-keyring, KeePassXC, ...) is running and unlocked; " + _CI_HINT,
    )


def _get(user: str, what: str) -> str | None:
    kr = _keyring()
    try:
        return kr.get_password(SERVICE, user)
    except Exception as exc:  # noqa: BLE001 - backends raise anything; reduced to a secret-free error
        raise _backend_error(f"read the {what} from the keyring", exc) from None


def _set(user: str, value: str, what: str, secret: str | None = None) -> None:
    """Store `value`; `secret` (default: the value) is what a backend's error text must not show."""
    kr = _keyring()
    try:
        kr.set_password(SERVICE, user, value)
    except Exception as exc:  # noqa: BLE001 - backends raise anything; reduced to a secret-free error
        raise _backend_error(f"store the {what} in the keyring", exc, secret or value) from None


def _delete(user: str, what: str) -> bool:
    import keyring.errors

    kr = _keyring()
    try:
        if kr.get_password(SERVICE, user) is None:
            return False
        kr.delete_password(SERVICE, user)
        return True
    except keyring.errors.PasswordDeleteError:
        return False
    except Exception as exc:  # noqa: BLE001 - backends raise anything; reduced to a secret-free error
        raise _backend_error(f"delete the {what} from the keyring", exc) from None


def _check_context(context: str) -> str:
    if not context or ":" in context or any(c.isspace() for c in context):
        raise CredentialsError(f"invalid context name {context!r}", "use letters, digits, '_', '.', '-'")
    return context


# ---- the index of contexts (so `list_contexts` works on every backend) -----------------------


def list_contexts() -> list[str]:
    """Contexts that hold a token or an SSH key in the keyring (sorted)."""
    raw = _get(_INDEX_USER, "list of contexts") or ""
    return sorted({c for c in raw.split("\n") if c})


def _index(context: str, present: bool) -> None:
    contexts = set(list_contexts())
    if (context in contexts) == present:
        return
    contexts = contexts | {context} if present else contexts - {context}
    _set(_INDEX_USER, "\n".join(sorted(contexts)), "list of contexts")


# ---- public API -----------------------------------------------------------------------------


def check_backend() -> str:
    """The keyring backend in use, after one real read through it; CredentialsError if unusable."""
    kr = _keyring()
    _get(_INDEX_USER, "list of contexts")
    return f"{type(kr).__module__}.{type(kr).__name__}"


SECRET_ENV_PREFIX = "ZDD_SECRET_"
SECRETS_KEY_ENV = "ZDD_SECRETS_KEY"  # the fingerprint key of application secrets, in CI


def without_credentials(env: Mapping[str, str]) -> dict[str, str]:
    """`env` minus the variables that carry credentials (DIGITALOCEAN_TOKEN, ZDD_SSH_PRIVATE_KEY,
    ZDD_SECRET_*, ZDD_SECRETS_KEY): the environment for a child process that needs none of them."""
    return {k: v for k, v in env.items()
            if k not in (TOKEN_ENV, SSH_KEY_ENV, SECRETS_KEY_ENV) and not k.startswith(SECRET_ENV_PREFIX)}


def same_api_url(a: str, b: str) -> bool:
    """Whether two API URLs name the same endpoint (case of scheme and host, default port and a
    trailing slash aside)."""

    def norm(url: str) -> tuple:
        parts = urlsplit(url.strip())
        scheme = parts.scheme.lower()
        try:
            port = parts.port or {"https": 443, "http": 80}.get(scheme)
        except ValueError:
            return (url,)
        return (scheme, (parts.hostname or "").lower(), port, parts.path.rstrip("/"), parts.query)

    return norm(a) == norm(b)


def _loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def operator_api_url() -> str:
    """Where a token that is not bound to a URL yet may be sent: ZDD_API_URL from the operator's
    environment (never from zdd.yaml), else DigitalOcean's API. CredentialsError if it is unusable."""
    url = os.environ.get(API_URL_ENV, "").strip().rstrip("/")
    if not url:
        return DEFAULT_API_URL
    problem = api_url_problem(url)
    if problem:
        raise CredentialsError(f"{API_URL_ENV}={url!r} in the environment: expected {problem}")
    return url


@dataclass(frozen=True)
class StoredToken:
    """A token as `zdd-tui login` keeps it: with the API URL it was checked against."""

    token: str
    api_url: str

    def __repr__(self) -> str:  # never the token, even in a traceback's locals
        return f"StoredToken(api_url={self.api_url!r})"


def stored_token(context: str) -> StoredToken | None:
    """The context's keyring entry. An entry written before tokens were bound (the bare token)
    counts as bound to DigitalOcean's API, the only one `login` checked against by default."""
    raw = _get(_token_user(_check_context(context)), "DigitalOcean token")
    if not raw:
        return None
    if raw.startswith("{"):
        try:
            record = json.loads(raw)
            return StoredToken(str(record["token"]), str(record["api_url"]))
        except (ValueError, KeyError, TypeError):
            raise CredentialsError(
                f"the keyring entry of context '{context}' (service '{SERVICE}') is not one zdd-tui wrote",
                f"run `zdd-tui login --context {context}` to replace it",
            ) from None
    return StoredToken(raw, DEFAULT_API_URL)


def _not_bound(config: Config, what: str, bound: str, fix: str) -> CredentialsError:
    api_url = config.digitalocean.api_url
    return CredentialsError(
        f"{what} is only sent to {bound}, but {config.path or 'zdd.yaml'} says digitalocean.api_url: {api_url!r}; "
        "nothing was sent (a project file cannot redirect a token)",
        f"{fix}; otherwise set digitalocean.api_url back to {bound}",
    )


def get_token(config: Config | None = None, context: str | None = None) -> str:
    """The DigitalOcean token to send to `config.digitalocean.api_url` (config None: the defaults).

    A sandbox config gets the sandbox's token from its own state dir; else env DIGITALOCEAN_TOKEN
    (bound to ZDD_API_URL or DigitalOcean's API); else the keyring entry of the context (default:
    the config's), bound to the URL `login` checked it against. A URL other than the token's is
    refused here, before any request."""
    config = config or Config()
    # A sandbox config always uses the sandbox's own throwaway token: a real token from the
    # environment must never be sent to a local stand-in.
    if config.is_sandbox and config.sandbox is not None:
        from zdd_tui.sandbox.statedir import read_token

        path = Path(config.sandbox.state_dir)
        if not path.is_absolute() and config.path is not None:
            path = Path(config.path).resolve().parent / path  # relative to the zdd.yaml
        token = read_token(path)
        if not _loopback(config.digitalocean.api_url):  # where the sandbox listens, and nowhere else
            raise _not_bound(config, "the sandbox's token", "the sandbox on this machine (a loopback address)",
                             "restart `zdd-tui sandbox up`: it writes its own URL into its zdd.yaml")
        return token
    api_url = config.digitalocean.api_url
    env = os.environ.get(TOKEN_ENV, "").strip()
    if env:
        bound = operator_api_url()
        if not same_api_url(api_url, bound):
            raise _not_bound(config, TOKEN_ENV, bound, f"if you trust {api_url!r}, set {API_URL_ENV}={api_url} "
                             "in the environment (not in zdd.yaml)")
        return env
    context = _check_context(context or config.context)
    stored = stored_token(context)
    if stored is None:
        raise CredentialsError(
            f"no DigitalOcean token for context '{context}' in the keyring (service '{SERVICE}')",
            f"run `zdd-tui login --context {context}`, or set {TOKEN_ENV}",
        )
    if not same_api_url(api_url, stored.api_url):
        raise _not_bound(config, f"the token of context '{context}' (checked there by `zdd-tui login`)",
                         stored.api_url, f"if you trust {api_url!r}, run `zdd-tui login --context {context} --api-url "
                         f"{api_url}` (it checks the token there, then binds it to that URL)")
    return stored.token


def check_new_token_url(config: Config) -> None:
    """A token typed in (not yet bound by `login`) may go to the config's API URL only when that is
    where `login` would check it: ZDD_API_URL from the environment, else DigitalOcean's API."""
    bound = operator_api_url()
    api_url = config.digitalocean.api_url
    if not same_api_url(api_url, bound):
        raise _not_bound(config, "a token typed here", bound,
                         f"if you trust {api_url!r}, run `zdd-tui login --context {config.context} --api-url "
                         f"{api_url}` in a terminal (or set {API_URL_ENV}={api_url} in the environment)")


def set_token(context: str, token: str, *, api_url: str) -> None:
    """Store the token bound to `api_url`, the URL it was checked against (and will only be sent to)."""
    token = token.strip()
    if not token or any(c.isspace() for c in token):
        raise CredentialsError("the DigitalOcean token is empty or contains whitespace", "paste the token alone")
    record = json.dumps({"token": token, "api_url": api_url.rstrip("/")})
    _set(_token_user(_check_context(context)), record, "DigitalOcean token", secret=token)
    _index(context, True)


def delete_token(context: str) -> bool:
    """Remove the context's token; True if there was one."""
    deleted = _delete(_token_user(_check_context(context)), "DigitalOcean token")
    _reindex(context)
    return deleted


def has_token(context: str) -> bool:
    """Whether the keyring holds a token for the context (the env override is not considered)."""
    return stored_token(context) is not None


def get_ssh_key(context: str = "default") -> str:
    """The SSH private key (OpenSSH/PEM text): env ZDD_SSH_PRIVATE_KEY, else the keyring."""
    env = os.environ.get(SSH_KEY_ENV, "")
    if env.strip():
        return env if env.endswith("\n") else env + "\n"
    context = _check_context(context)
    key = _get(_ssh_user(context), "SSH private key")
    if not key:
        raise CredentialsError(
            f"no SSH private key for context '{context}' in the keyring (service '{SERVICE}')",
            f"run `zdd-tui login --context {context} --ssh-key FILE` (or `zdd-tui setup`), or set {SSH_KEY_ENV}",
        )
    return key


def set_ssh_key(context: str, private_key: str) -> None:
    if "PRIVATE KEY-----" not in private_key:
        raise CredentialsError(
            "that is not a private key (no '-----BEGIN ... PRIVATE KEY-----' block)",
            "give the private key file (e.g. ~/.ssh/id_ed25519), not the .pub file",
        )
    _set(_ssh_user(_check_context(context)), private_key, "SSH private key")
    _index(context, True)


def delete_ssh_key(context: str) -> bool:
    """Remove the context's SSH key; True if there was one."""
    deleted = _delete(_ssh_user(_check_context(context)), "SSH private key")
    _reindex(context)
    return deleted


def has_ssh_key(context: str) -> bool:
    return bool(_get(_ssh_user(_check_context(context)), "SSH private key"))


def _reindex(context: str) -> None:
    if not (has_token(context) or has_ssh_key(context)):
        _index(context, False)


# ---- application secrets (`zdd-tui secret`, service.secrets) --------------------------------
#
# Users "<context>:secret:<NAME>" hold the values; "<context>:secrets" is a non-secret index
# (JSON: name -> when it was set), since a keyring cannot list its entries; "<context>:secrets-key"
# is the random key of the fingerprints on the hosts (zdd_tui.app_secrets). In CI,
# ZDD_SECRET_<NAME> in the environment takes precedence over the keyring (as DIGITALOCEAN_TOKEN
# does), and when every secret a deploy needs is there the keyring is not opened at all.


def _secret_user(context: str, name: str) -> str:
    return f"{context}:secret:{name}"


def _secrets_index_user(context: str) -> str:
    return f"{context}:secrets"


def check_secret_name(name: str) -> str:
    from zdd_tui.app_secrets import name_problem

    problem = name_problem(name)
    if problem:
        raise CredentialsError(f"invalid secret name {name!r}: {problem}",
                               "use a name like DATABASE_URL (letters, digits, '_'; not starting with a digit)")
    return name


def _secrets_index(context: str) -> dict[str, str]:
    raw = _get(_secrets_index_user(context), "list of secrets")
    try:
        index = json.loads(raw) if raw else {}
    except ValueError:
        index = {}
    return {str(k): str(v) for k, v in index.items()} if isinstance(index, dict) else {}


def list_app_secrets(context: str) -> dict[str, str]:
    """name -> when it was set (ISO 8601, UTC), for the context's secrets in the keyring. No values."""
    return dict(sorted(_secrets_index(_check_context(context)).items()))


def set_app_secret(context: str, name: str, value: str) -> None:
    from datetime import UTC, datetime

    context, name = _check_context(context), check_secret_name(name)
    if any(c in value for c in "\n\r\0"):
        raise CredentialsError(f"secret {name}: the value contains a newline, carriage return or NUL; nothing was "
                               "stored", "a container's environment variable holds one line")
    if not value:
        raise CredentialsError(f"secret {name}: the value is empty; nothing was stored")
    _set(_secret_user(context, name), value, f"secret {name}")
    secrets_key(context)  # made with the first secret, so every deploy fingerprints with it
    index = _secrets_index(context)
    index[name] = datetime.now(UTC).isoformat(timespec="seconds")
    _set(_secrets_index_user(context), json.dumps(index, sort_keys=True), "list of secrets")


def delete_app_secret(context: str, name: str) -> bool:
    """Remove one secret; True if there was one."""
    context, name = _check_context(context), check_secret_name(name)
    deleted = _delete(_secret_user(context, name), f"secret {name}")
    index = _secrets_index(context)
    if index.pop(name, None) is not None:
        _set(_secrets_index_user(context), json.dumps(index, sort_keys=True), "list of secrets")
        deleted = True
    return deleted


def app_secret_env(name: str) -> str | None:
    """ZDD_SECRET_<NAME> from the environment (an empty variable counts as unset)."""
    return os.environ.get(SECRET_ENV_PREFIX + name) or None


def get_app_secrets(context: str, names: list[str] | tuple[str, ...]) -> tuple[dict[str, str], list[str]]:
    """(values, missing): each name from ZDD_SECRET_<NAME>, else the keyring. The keyring is read
    only for names the environment does not give."""
    values: dict[str, str] = {}
    missing: list[str] = []
    for name in names:
        check_secret_name(name)
        env = app_secret_env(name)
        if env is not None:
            values[name] = env
            continue
        stored = _get(_secret_user(_check_context(context), name), f"secret {name}")
        if stored:
            values[name] = stored
        else:
            missing.append(name)
    return values, missing


def secrets_key(context: str, *, create: bool = True) -> bytes | None:
    """The fingerprint key: ZDD_SECRETS_KEY (hex), else the keyring's (made on first use when
    `create`); None when neither exists (and not created)."""
    env = os.environ.get(SECRETS_KEY_ENV, "").strip()
    if env:
        try:
            key = bytes.fromhex(env)
        except ValueError:
            key = b""
        if len(key) < 16:
            raise CredentialsError(f"{SECRETS_KEY_ENV} must be at least 32 hex digits",
                                   "generate one with `python -c 'import secrets; print(secrets.token_hex(32))'`")
        return key
    user = f"{_check_context(context)}:secrets-key"
    stored = _get(user, "secrets fingerprint key")
    if stored:
        return bytes.fromhex(stored)
    if not create:
        return None
    import secrets as random

    key = random.token_bytes(32)
    _set(user, key.hex(), "secrets fingerprint key")
    return key
