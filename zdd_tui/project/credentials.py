"""Credentials: the OS keyring (per context) and checking a DigitalOcean token before storing it."""

from __future__ import annotations

import ipaddress
from typing import Any
from urllib.parse import urlsplit

from zdd_tui.errors import UsageError, ZddError
from zdd_tui.secrets import (
    API_URL_ENV,
    SECRET_ENV_PREFIX,
    SSH_KEY_ENV,
    TOKEN_ENV,
    app_secret_env,
    check_backend,
    check_secret_name,
    delete_app_secret,
    delete_ssh_key,
    delete_token,
    list_app_secrets,
    operator_api_url,
    same_api_url,
    set_app_secret,
    set_ssh_key,
    set_token,
    without_credentials,
)

__all__ = [
    "API_URL_ENV", "SECRET_ENV_PREFIX", "SSH_KEY_ENV", "TOKEN_ENV", "app_secret_env", "check_backend",
    "check_secret_name", "check_token", "delete_app_secret", "delete_ssh_key", "delete_token", "list_app_secrets",
    "operator_api_url", "same_api_url", "set_app_secret", "set_ssh_key", "set_token", "without_credentials",
]


def _allow_insecure(api_url: str) -> bool:
    """Plain http to a private address (the lab's network namespaces), already allowed by config rules."""
    parts = urlsplit(api_url)
    try:
        return parts.scheme == "http" and ipaddress.ip_address(parts.hostname or "").is_private
    except ValueError:
        return False


async def check_token(api_url: str, token: str) -> Any:
    """The account the token belongs to; UsageError (rejected) or ZddError (unreachable, ...)."""
    from zdd_tui.cloud.client import DOClient
    from zdd_tui.cloud.errors import CloudError, UnauthorizedError

    try:
        async with DOClient(api_url, token, max_retries=1, timeout=30, allow_insecure=_allow_insecure(api_url)) as do:
            return await do.account()
    except UnauthorizedError as exc:  # DOClient's text carries DO's message and request id, never the token
        raise UsageError(
            f"the token was rejected, nothing was stored: {exc.message}",
            exc.hint if exc.status == 403 else  # valid, but without a scope: the hint names them
            "create a token with read and write scope at https://cloud.digitalocean.com/account/api/tokens "
            "and paste it whole",
        ) from None
    except CloudError as exc:
        raise ZddError(f"could not check the token, nothing was stored: {exc.message}", exc.hint) from None
