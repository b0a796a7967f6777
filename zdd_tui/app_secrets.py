"""Application secrets on their way to a container: names, the values to deliver, fingerprints.

A secret's value never leaves this process except on the way into a container's environment
(an env file on a host's memory-backed storage, or the sandbox agent's memory). What the hosts
keep is a label listing each secret's name and a fingerprint: the first 12 hex digits of
HMAC-SHA256(value) under a random per-context key that never leaves the operator's side (the
keyring, or ZDD_SECRETS_KEY in CI). A plain hash of a short password could be brute-forced by
anyone who can read the label; without the key it cannot. The label also names the key (a
fingerprint of the key itself), so a container started under another key shows as "cannot
compare" rather than as drift.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

# The container label that lists the secrets a container was started with (never values).
LABEL = "zdd.secrets"
FINGERPRINT_HEX = 12  # 48 bits: collisions between two values of one secret are not a concern

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# zdd-tui's own variables (ZDD_PORT, ZDD_VERSION, ...) are set by zdd-tui, not by a secret.
RESERVED_PREFIX = "ZDD_"


def name_problem(name: str) -> str | None:
    """Why `name` cannot be a secret's name (an environment variable's), or None."""
    if not name:
        return "it is empty"
    if len(name) > 128:
        return "at most 128 characters"
    if not _NAME.fullmatch(name):
        bad = next((c for c in name if not (c.isascii() and (c.isalnum() or c == "_"))), None)
        if bad is not None:
            return f"an environment variable name has letters, digits and '_' only, not {bad!r}"
        return "an environment variable name cannot start with a digit"
    if name.upper().startswith(RESERVED_PREFIX):
        return f"names starting with {RESERVED_PREFIX} are zdd-tui's own variables"
    return None


def key_id(key: bytes) -> str:
    """Names the fingerprint key without revealing it."""
    return hmac.new(key, b"zdd-tui secrets key id", hashlib.sha256).hexdigest()[:8]


def fingerprint(key: bytes, value: str) -> str:
    return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()[:FINGERPRINT_HEX]


@dataclass(frozen=True)
class SecretEnv:
    """The secrets one deploy gives its containers: values (for the environment only) and the
    label text (names and fingerprints) the container carries."""

    values: Mapping[str, str] = field(default_factory=dict)
    label: str = ""

    def __repr__(self) -> str:  # never a value, even in a traceback's locals
        return f"SecretEnv(names={sorted(self.values)!r})"

    def scrub(self, text: str) -> str:
        """`text` with every secret value replaced by [secret NAME] (output from the app itself)."""
        for name, value in sorted(self.values.items(), key=lambda kv: -len(kv[1])):
            if value:
                text = text.replace(value, f"[secret {name}]")
        return text


def secret_env(key: bytes, values: Mapping[str, str]) -> SecretEnv:
    return SecretEnv(dict(values), label_text(key, values) if values else "")


def label_text(key: bytes, values: Mapping[str, str]) -> str:
    """`key=<key id>;NAME=<fingerprint>,...` (names sorted)."""
    pairs = ",".join(f"{n}={fingerprint(key, values[n])}" for n in sorted(values))
    return f"key={key_id(key)};{pairs}"


@dataclass(frozen=True)
class SecretsLabel:
    key_id: str
    fingerprints: dict[str, str]


def parse_label(text: str | None) -> SecretsLabel | None:
    """The label as written by `label_text`; None when absent or not ours."""
    if not text or not text.startswith("key="):
        return None
    head, _, rest = text.partition(";")
    fps = {}
    for pair in filter(None, rest.split(",")):
        name, _, fp = pair.partition("=")
        if name_problem(name) is None and re.fullmatch(r"[0-9a-f]{1,64}", fp):
            fps[name] = fp
    return SecretsLabel(head[len("key="):], fps)
