"""Typed errors for everything that goes wrong talking to DigitalOcean (or the sandbox API).

Each error keeps DigitalOcean's own message, its error id (`not_found`, `unauthorized`, ...) and the
request id (to quote in a support ticket), plus a hint saying what to do. The token is never part
of any of them: the client redacts it from every text it puts here.
"""

from __future__ import annotations

from zdd_tui.errors import ZddError


class CloudError(ZddError):
    """A DigitalOcean API call failed."""

    def __init__(
        self,
        message: str,
        hint: str | None = None,
        *,
        status: int | None = None,
        do_id: str | None = None,
        request_id: str | None = None,
    ):
        if request_id:
            message = f"{message} (request id {request_id})"
        super().__init__(message, hint)
        self.status = status
        self.do_id = do_id
        self.request_id = request_id

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status={self.status!r}, do_id={self.do_id!r}, message={self.message!r})"


class NotFoundError(CloudError):
    """404: the droplet, load balancer, registry, tag ... does not exist (or is not yours)."""


class UnauthorizedError(CloudError):
    """401/403: the token is wrong, expired, or lacks the scope."""


class ForbiddenError(UnauthorizedError):
    """403: the token is valid but lacks a scope the operation needs."""


class RateLimitedError(CloudError):
    """429 and still limited after waiting as long as allowed."""

    def __init__(self, *args, retry_after: float | None = None, reset_epoch: float | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.retry_after = retry_after
        self.reset_epoch = reset_epoch  # the hourly limit: when the budget comes back


class UnreachableError(CloudError):
    """No HTTP answer at all (connection refused, DNS, TLS, timeout)."""


# The token scopes zdd-tui's requests need (DigitalOcean's custom scopes, as its OpenAPI spec
# names them per operation); a token with fewer gets 403 on the operations that need the rest.
REQUIRED_SCOPES = (
    "account:read",
    "actions:read",
    "droplet:read", "droplet:create", "droplet:delete",
    "ssh_key:read", "ssh_key:create",
    "tag:create",
    "load_balancer:read", "load_balancer:create", "load_balancer:update",
    "monitoring:read",
    "registry:read", "registry:create", "registry:update", "registry:delete",
    "sizes:read", "regions:read",
)


def hint_for(status: int | None, do_id: str | None) -> str:
    """What the operator can do about an API failure with this status."""
    if status == 401:
        return (
            "DigitalOcean does not accept the token (wrong, expired or revoked): run `zdd-tui login` "
            "to store a valid one"
        )
    if status == 403:
        return (
            "the token lacks a scope this needs: create a token with full access, or with the custom scopes "
            + ", ".join(REQUIRED_SCOPES) + ", and run `zdd-tui login`"
        )
    if status == 404:
        return "check the name or id in zdd.yaml; `zdd-tui status` lists what exists"
    if status == 429:
        return "DigitalOcean's rate limit (250/min, 5000/h per token) is exhausted: wait a minute and retry"
    if status == 422:
        return "DigitalOcean rejected the request's values; fix them in zdd.yaml and retry"
    if status is not None and status >= 500:
        return "DigitalOcean had an internal error; retry shortly, and quote the request id if it persists"
    return "retry; if it persists, check https://status.digitalocean.com"
