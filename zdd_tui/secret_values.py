"""Values that look like a credential: the shapes issuers document.

Used on zdd.yaml (committed to git) and so on service.env, whose values reach every host. Each
kind says what was recognised, never the value.
"""

from __future__ import annotations

import re

_SECRET_VALUES = (
    (re.compile(r"\bdo[opr]_v1_[0-9a-f]{64}\b"), "a DigitalOcean token (do?_v1_ and 64 hex digits)"),
    (re.compile(r"^[0-9a-f]{64}$"), "a DigitalOcean token (64 hex characters)"),
    (re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----"), "a private key (-----BEGIN ... PRIVATE KEY-----)"),
    # A Sentry DSN's user part is its key: https://<32 hex>[:<32 hex>]@<host>/<project id>.
    (re.compile(r"[a-z][a-z0-9+.-]*://[0-9a-f]{32}(:[0-9a-f]{32})?@[^\s/@]+/(\S*/)?\d+\b", re.IGNORECASE),
     "a Sentry DSN (its key is a credential)"),
    (re.compile(r"[a-z][a-z0-9+.-]*://[^\s/?#@]*:[^\s/?#@]+@", re.IGNORECASE),
     "a URL with a password in it (scheme://user:password@...)"),
    (re.compile(r"\b[rs]k_(live|test)_[0-9A-Za-z]{8,}"), "a Stripe secret key (sk_/rk_live_, sk_/rk_test_)"),
    (re.compile(r"\bwhsec_[0-9A-Za-z+/=]{16,}"), "a webhook signing secret (whsec_)"),
    (re.compile(r"\bgh[pousr]_[0-9A-Za-z]{30,}"), "a GitHub token (ghp_, gho_, ghu_, ghs_, ghr_)"),
    (re.compile(r"\bgithub_pat_[0-9A-Za-z_]{20,}"), "a GitHub fine-grained token (github_pat_)"),
    (re.compile(r"\bglpat-[0-9A-Za-z_-]{20,}"), "a GitLab token (glpat-)"),
    (re.compile(r"\bxox[abposr]-[0-9A-Za-z-]{10,}"), "a Slack token (xoxb-, xoxp-, ...)"),
    (re.compile(r"hooks\.slack\.com/(services|workflows)/[0-9A-Za-z/_-]{20,}"), "a Slack webhook URL"),
    (re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"), "an AWS access key id (AKIA..., ASIA...)"),
    (re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b"), "a Google API key (AIza...)"),
    (re.compile(r"\bsk-(proj-|ant-)?[0-9A-Za-z_-]{20,}"), "an API secret key (sk-...)"),
    (re.compile(r"\bnpm_[0-9A-Za-z]{36}\b"), "an npm token (npm_)"),
    (re.compile(r"\bSG\.[0-9A-Za-z_-]{16,}\.[0-9A-Za-z_-]{16,}"), "a SendGrid API key (SG.)"),
    (re.compile(r"\beyJ[0-9A-Za-z_-]{8,}\.eyJ[0-9A-Za-z_-]{8,}\.[0-9A-Za-z_-]*"), "a JSON Web Token (eyJ...)"),
)

APP_SECRETS_HINT = (
    "application secrets do not belong in zdd.yaml (it is committed, and service.env values reach every "
    "host in the clear): keep them out of it; store each with `zdd-tui secret set NAME` and list its name "
    "in service.secrets. "
    "zdd-tui's own DigitalOcean token and SSH key go to the OS keyring with `zdd-tui login`"
)


def secret_kind(value: str) -> str | None:
    """What kind of credential `value` looks like, or None. Never returns any part of the value."""
    for pattern, kind in _SECRET_VALUES:
        if pattern.search(value):
            return kind
    return None
