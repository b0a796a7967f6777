"""Sandbox "images": versions of the sample service, each a set of ZDD_* environment switches.

A sandbox registry tag names one of these. Pulling it on a local host records it; running it
starts `python -m zdd_service` with the image's environment (ZDD_VERSION plus its behaviour
switches). The behaviours are the service's own switches (service/README.md):
ok (none), unhealthy (health always 503), crash (exits during start-up), slow (health answers
503 "starting" for a while after start, then every `GET /` takes 250 ms), errors (healthy, but 5%
of `GET /` answered 500), plain (no admin listener at all, even when asked: only `$PORT` and
`/health`, the contract any app meets; deployable with local-swap only). `slow` and `errors` pass
every health check: only the canary's comparison with the old version catches them.
"""

from __future__ import annotations

import hashlib
import secrets as _random
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta

BEHAVIOURS: dict[str, dict[str, str]] = {
    "ok": {},
    "unhealthy": {"ZDD_FAIL_HEALTH": "1"},
    "crash": {"ZDD_CRASH_ON_START": "1"},
    # Slow, not broken: a deploy of it should succeed after waiting (start timeout default 60 s),
    # and then it serves slowly: a p95 a canary compares with the old version's.
    "slow": {"ZDD_START_DELAY_SECONDS": "8", "ZDD_LATENCY_MS": "250"},
    # Healthy but bad: one `GET /` in twenty answers 500 (marked "injected" in its body).
    "errors": {"ZDD_ERROR_RATE": "0.05"},
    "plain": {"ZDD_NO_ADMIN": "1"},
}


@dataclass(frozen=True)
class SandboxImage:
    tag: str
    behaviour: str  # a key of BEHAVIOURS
    version: str  # what the service reports (ZDD_VERSION); `latest` carries its sha tag's
    digest: str  # sha256:<hex>, same for tags that alias the same version
    size: int = 0
    created_at: str = ""  # ISO 8601
    env: dict[str, str] = field(default_factory=dict)  # extra switches (beyond the behaviour's)

    def environment(self) -> dict[str, str]:
        return {"ZDD_VERSION": self.version, **BEHAVIOURS.get(self.behaviour, {}), **self.env}

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> SandboxImage:
        return cls(
            tag=d["tag"],
            behaviour=d.get("behaviour", "ok"),
            version=d.get("version") or d["tag"],
            digest=d.get("digest") or digest_for(d.get("version") or d["tag"], d.get("behaviour", "ok")),
            size=int(d.get("size") or 0),
            created_at=d.get("created_at") or "",
            env=dict(d.get("env") or {}),
        )


def digest_for(version: str, behaviour: str) -> str:
    return "sha256:" + hashlib.sha256(f"zdd-sandbox:{version}:{behaviour}".encode()).hexdigest()


def sha_tag() -> str:
    return "sha-" + _random.token_hex(4)[:7]


def make_image(
    tag: str, behaviour: str = "ok", *, version: str | None = None, when: datetime | None = None
) -> SandboxImage:
    if behaviour not in BEHAVIOURS:
        raise ValueError(f"unknown behaviour {behaviour!r}: expected one of {', '.join(BEHAVIOURS)}")
    version = version or tag
    digest = digest_for(version, behaviour)
    when = when or datetime.now(UTC)
    # A plausible compressed size, stable per digest, so the registry pane has figures to show.
    size = 40_000_000 + int(digest[7:15], 16) % 9_000_000
    return SandboxImage(tag, behaviour, version, digest, size, when.replace(microsecond=0).isoformat())


def seed_images(now: datetime | None = None) -> list[SandboxImage]:
    """A fresh sandbox registry: two good versions (`latest` = the newer), one per other behaviour.

    Oldest first. Tags are random per sandbox so two sandboxes never look alike by accident.
    """
    now = now or datetime.now(UTC)
    tags: list[str] = []
    while len(tags) < 7:
        t = sha_tag()
        if t not in tags:
            tags.append(t)
    v1, v2, bad_health, crash, errors, slow, plain = tags
    out = [
        make_image(v1, "ok", when=now - timedelta(days=2)),
        make_image(v2, "ok", when=now - timedelta(days=1)),
        make_image(bad_health, "unhealthy", when=now - timedelta(hours=3)),
        make_image(crash, "crash", when=now - timedelta(hours=2)),
        make_image(errors, "errors", when=now - timedelta(minutes=90)),
        make_image(slow, "slow", when=now - timedelta(hours=1)),
        make_image(plain, "plain", when=now - timedelta(minutes=30)),
    ]
    latest = out[1]
    out.append(SandboxImage("latest", "ok", latest.version, latest.digest, latest.size, latest.created_at))
    return out


def parse_ref(image_ref: str) -> tuple[str, str]:
    """`server/registry/repo:tag` -> (`server/registry/repo`, tag). A bare name means `latest`.

    Digest references (`...@sha256:...`) return the digest as the tag; lookups match digests too.
    """
    if "@" in image_ref:
        repo, digest = image_ref.split("@", 1)
        return repo, digest
    last = image_ref.rsplit("/", 1)[-1]
    if ":" in last:
        repo, tag = image_ref.rsplit(":", 1)
        return repo, tag
    return image_ref, "latest"
