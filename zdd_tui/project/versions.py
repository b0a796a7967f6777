"""Which versions ran on this fleet, from the hosts' journals: what rollback offers.

The journal says, host by host, when a rollout put a tag on it (a `done` result) and what each
host ran when a rollout started (`from`). Replaying it in order gives each host a timeline of
tags; a version's last run is where it was on the fleet most recently. The console's picker,
its registry pane and `zdd-tui rollback` (with no tag, or `--list`) all read this one answer.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from zdd_tui.rollout.journal import RolloutRecord


@dataclass(frozen=True)
class VersionRun:
    """One tag that ran on the fleet, as of its last run."""

    tag: str
    digest: str | None
    hosts: tuple[str, ...]  # where its last run was
    since: float | None  # epoch seconds its last run began; None: before the journal's history
    until: float | None  # epoch seconds its last run ended; None: it runs now
    rollout_id: str | None = None  # the rollout that put it there (None: before the history)
    action: str = ""  # deploy | rollback | resume
    operator: str = ""  # who ran that rollout, user@host
    ended: str = ""  # how that rollout ended: success | halted | interrupted | error | running
    order: int = 0  # position in the replay; breaks ties between equal times

    @property
    def current(self) -> bool:
        return self.until is None

    def ran_seconds(self, now: float) -> float | None:
        """How long its last run lasted (so far, for the current one); None when unknown."""
        if self.since is None:
            return None
        return max((self.until if self.until is not None else now) - self.since, 0.0)

    def to_dict(self) -> dict[str, Any]:
        return {"tag": self.tag, "digest": self.digest, "hosts": list(self.hosts), "since": self.since,
                "until": self.until, "current": self.current, "rollout_id": self.rollout_id,
                "action": self.action or None, "operator": self.operator or None, "ended": self.ended or None}


@dataclass
class _Span:
    tag: str
    host: str
    start: float | None
    end: float | None
    rollout: RolloutRecord | None
    order: int
    digest: str | None = None


def ran_versions(rollouts: Iterable[RolloutRecord]) -> list[VersionRun]:
    """Every tag the journal shows running on a host, current ones first, then the most recently
    left first. `rollouts` oldest first (as `journal.summarize` returns them)."""
    spans: list[_Span] = []
    open_: dict[str, _Span] = {}  # host -> the span it is in
    seq = 0

    def switch(host: str, tag: str, at: float | None, rollout: RolloutRecord | None, digest: str | None = None,
               known_start: bool = True) -> None:
        nonlocal seq
        cur = open_.get(host)
        if cur is not None and cur.tag == tag:
            return
        if cur is not None:
            cur.end = at if at is not None else cur.start
        seq += 1
        span = _Span(tag, host, at if known_start else None, None, rollout, seq, digest)
        spans.append(span)
        open_[host] = span

    for r in rollouts:
        # What each host ran as the rollout began; a host the history has not seen yet has run
        # it since before the history (start unknown).
        for host, tag in sorted(r.from_tags.items()):
            if tag:
                switch(host, tag, r.started, None, known_start=host in open_)
        for res in sorted(r.results.values(), key=lambda x: (x.ended, x.host)):
            if res.outcome == "done" and res.to_tag:
                switch(res.host, res.to_tag, res.ended or r.started, r, res.digest)
            elif res.outcome in ("restored", "interrupted") and res.from_tag:
                switch(res.host, res.from_tag, res.ended or r.started, None)

    by_tag: dict[str, list[_Span]] = {}
    for s in spans:
        by_tag.setdefault(s.tag, []).append(s)
    out = []
    for tag, ss in by_tag.items():
        current = [s for s in ss if s.end is None]
        brought = [s for s in ss if s.rollout is not None]
        last_rollout = max(brought, key=lambda s: s.order).rollout if brought else None
        # The last run: spans since the rollout that last brought it (or all, before history).
        last = [s for s in ss if last_rollout is None or s.order >= min(
            x.order for x in brought if x.rollout is last_rollout)]
        starts = [s.start for s in last]
        since = None if any(x is None for x in starts) or not starts else min(x for x in starts if x is not None)
        until = None if current else max((s.end or 0.0) for s in last)
        hosts = current if current else last
        by = last_rollout
        ended = "" if by is None else (by.status or "running")
        out.append(VersionRun(
            tag=tag, digest=next((s.digest for s in reversed(ss) if s.digest), None),
            hosts=tuple(sorted({s.host for s in hosts})), since=since, until=until,
            rollout_id=by.rollout_id if by else None, action=by.action if by else "",
            operator=by.operator if by else "", ended=ended, order=max(s.order for s in ss)))
    out.sort(key=lambda v: (v.current, v.until or 0.0, v.order), reverse=True)
    return out


@dataclass
class Versions:
    """The versions that ran (current first) and, from the registry, those that never did."""

    ran: list[VersionRun]
    never_ran: list[str] = field(default_factory=list)  # registry tags, newest first
    missing: frozenset[str] = frozenset()  # ran, but no longer in the registry
    # tag -> words shown beside it (the picker, the registry pane): the sandbox's failure modes;
    # also the place for what a strategy knows per tag (e.g. a container kept on the hosts).
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def current(self) -> list[VersionRun]:
        return [v for v in self.ran if v.current]

    @property
    def previous(self) -> VersionRun | None:
        """The version that ran before the current one: what undoing the last deploy goes back
        to (the newest that no host runs now and that the registry still has)."""
        return next((v for v in self.ran if not v.current and v.tag not in self.missing), None)

    def get(self, tag: str) -> VersionRun | None:
        return next((v for v in self.ran if v.tag == tag), None)

    def to_dict(self) -> dict[str, Any]:
        prev = self.previous
        return {"ran": [v.to_dict() | {"in_registry": v.tag not in self.missing} for v in self.ran],
                "previous": prev.tag if prev else None, "never_ran": list(self.never_ran),
                "labels": dict(self.labels)}

    def lines(self, now: float) -> list[str]:
        """For `zdd-tui rollback --list`: one line per version that ran, newest first."""
        if not self.ran:
            return ["no version has run on this fleet yet (the hosts' journals are empty)"]
        prev = self.previous
        out = []
        for v in self.ran:
            mark = "*" if v.current else (">" if prev is not None and v.tag == prev.tag else " ")
            out.append(f"{mark} {describe(v, now)}" + ("  [deleted from the registry]" if v.tag in self.missing
                                                       else ""))
        out.append("* runs now   > the previous version ('zdd-tui rollback' with no tag goes back to it)")
        return out


def with_registry(ran: list[VersionRun], tags: Iterable[Any], labels: dict[str, str] | None = None) -> Versions:
    """Join the journal's versions with the registry's tags (RegistryTag: newest first by
    updated_at). `latest` is left out of the never-run list when a sha tag has its digest."""
    tags = list(tags)
    seen = {v.tag for v in ran}
    present = {t.tag for t in tags}
    digests = {t.manifest_digest for t in tags if t.tag != "latest"}

    def newest(t: Any) -> tuple:
        u = t.updated_at
        return (u.timestamp() if u is not None else 0.0, t.tag)

    never = [t.tag for t in sorted(tags, key=newest, reverse=True)
             if t.tag not in seen and not (t.tag == "latest" and t.manifest_digest in digests)]
    return Versions(ran=list(ran), never_ran=never, missing=frozenset(v.tag for v in ran if v.tag not in present),
                    labels=dict(labels or {}))


DEPLOY_RULE = "git HEAD's sha tag if in the registry, else `latest`'s sha tag"


def deploy_choice(tags: Iterable[Any], head: str | None) -> tuple[str | None, str]:
    """What the console's `d` deploys, by DEPLOY_RULE, and why in words. `head`: sha-<git HEAD>
    (None outside a git checkout); tags: RegistryTag."""
    tags = list(tags)
    names = {t.tag for t in tags}
    if head is not None and head in names:
        return head, f"{head} is the current git HEAD's tag"
    latest = next((t for t in tags if t.tag == "latest"), None)
    where = "no tag for git HEAD"  # the same words in or out of a checkout
    if latest is not None:
        same = sorted(t.tag for t in tags if t.tag.startswith("sha-") and t.manifest_digest == latest.manifest_digest)
        if same:
            return same[0], f"{same[0]} is what `latest` points at ({where})"
        return "latest", f"`latest` has no sha tag ({where})"
    return None, f"the registry has no `latest` ({where})"


def describe(v: VersionRun, now: float) -> str:
    """One version in words: tag, when it last ran, where, how long, how its rollout ended, who."""
    when = "runs now" if v.current else f"ran {ago(now - (v.until or now))} ago"
    hosts = ", ".join(v.hosts) if len(v.hosts) <= 3 else f"{', '.join(v.hosts[:2])} +{len(v.hosts) - 2}"
    dur = v.ran_seconds(now)
    length = f"for {duration(dur)}" if dur is not None else "for ?"
    how = f"{v.action} {v.ended}, {v.operator}" if v.rollout_id else "ran before the journal began"
    return f"{v.tag:<13} {when:<12} {hosts:<22} {length:<11} {how}"


def ago(seconds: float) -> str:
    s = max(int(seconds), 0)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m"
    if s < 86400:
        return f"{s // 3600}h"
    return f"{s // 86400}d"


def duration(seconds: float) -> str:
    s = max(int(seconds), 0)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"
