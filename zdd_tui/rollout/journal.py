"""The journal: JSON lines on each host recording what ran where and when.

Records (one JSON object per line, `type` first):
- start: rollout_id, action, to_tag, image_ref, operator, hosts, from (host -> tag), batch_size,
  resumes, strategy (lb-drain | local-swap; absent in older journals), at. Written to every host.
- step:  rollout_id, host, phase, detail, at. Written to that host as it moves (so a killed
  rollout shows where each host stopped).
- host:  rollout_id, host, outcome (done | restored | failed | interrupted), step, from_tag,
  to_tag, digest, seen, started, ended. Written to that host.
- end:   rollout_id, status, message, fleet, at. Written to every host.
A rollout with a start and no end was interrupted (unless its lock holder is still running).
Times are epoch seconds (wall clock). Readers merge all hosts' files and drop duplicates, so one
unreachable host loses little. A line that is not such a record (torn by a crash, edited, written
by someone else) is skipped and reported with its host and line number: one bad line must never
stop a status, a deploy or a rollback. Text read back is made visible (zdd_tui.text).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from zdd_tui.rollout.interfaces import HostRuntime
from zdd_tui.text import visible

JOURNAL_FILE = "journal.jsonl"
KEEP_ROLLOUTS = 100  # per host, after compaction: plenty of history, a bounded file
COMPACT_AT = 2 * KEEP_ROLLOUTS


class Journal:
    """Writer. Failures are collected (and reported through `on_error`), never raised: a journal
    write that fails must not leave a host half-deployed."""

    def __init__(self, runtimes: Mapping[str, HostRuntime], *, wallclock: Callable[[], float] = time.time,
                 on_error: Callable[[str, BaseException], None] | None = None):
        self.runtimes = runtimes
        self.wallclock = wallclock
        self.on_error = on_error
        self.errors: list[tuple[str, str]] = []

    async def _append(self, hosts, record: dict) -> None:
        line = json.dumps(record, sort_keys=False, separators=(",", ":"))
        for name in hosts:
            rt = self.runtimes.get(name)
            if rt is None:
                continue
            try:
                await rt.state_append(JOURNAL_FILE, line)
            except Exception as exc:  # noqa: BLE001 - see class docstring
                self.errors.append((name, f"{type(exc).__name__}: {exc}"))
                if self.on_error:
                    self.on_error(name, exc)

    async def compact(self) -> None:
        """Keep each host's journal bounded: past COMPACT_AT rollouts, rewrite it with the last
        KEEP_ROLLOUTS. Called under the deploy lock, so no other writer races the rewrite."""
        for name in sorted(self.runtimes):
            rt = self.runtimes[name]
            try:
                text = await rt.state_read(JOURNAL_FILE)
                if not text:
                    continue
                lines = [ln for ln in text.splitlines() if ln.strip()]
                order: list[str] = []
                for line in lines:
                    try:
                        rid = str(json.loads(line).get("rollout_id"))
                    except (ValueError, AttributeError):
                        continue
                    if rid not in order:
                        order.append(rid)
                if len(order) <= COMPACT_AT:
                    continue
                keep = set(order[-KEEP_ROLLOUTS:])
                kept = []
                for line in lines:
                    try:
                        if str(json.loads(line).get("rollout_id")) in keep:
                            kept.append(line)
                    except (ValueError, AttributeError):
                        pass
                await rt.state_write(JOURNAL_FILE, "\n".join(kept) + "\n")
            except Exception as exc:  # noqa: BLE001 - a long journal is not worth failing a deploy
                self.errors.append((name, f"compacting: {type(exc).__name__}: {exc}"))

    async def start(self, *, rollout_id: str, action: str, to_tag: str, image_ref: str, operator: str,
                    hosts: list[str], from_tags: dict[str, str | None], batch_size: int,
                    resumes: str | None = None, strategy: str | None = None) -> None:
        rec: dict[str, Any] = {
            "type": "start", "rollout_id": rollout_id, "action": action, "to_tag": to_tag,
            "image_ref": image_ref, "operator": operator, "hosts": hosts, "from": from_tags,
            "batch_size": batch_size, "resumes": resumes, "at": self.wallclock()}
        if strategy:
            rec["strategy"] = strategy
        await self._append(sorted(self.runtimes), rec)

    async def step(self, rollout_id: str, host: str, phase: str, detail: str = "") -> None:
        await self._append([host], {"type": "step", "rollout_id": rollout_id, "host": host, "phase": phase,
                                    "detail": detail, "at": self.wallclock()})

    async def host(self, rollout_id: str, host: str, *, outcome: str, step: str | None, from_tag: str | None,
                   to_tag: str, digest: str | None, seen: str, started: float) -> None:
        await self._append([host], {
            "type": "host", "rollout_id": rollout_id, "host": host, "outcome": outcome, "step": step,
            "from_tag": from_tag, "to_tag": to_tag, "digest": digest, "seen": seen, "started": started,
            "ended": self.wallclock()})

    async def end(self, rollout_id: str, status: str, message: str, fleet: dict[str, str | None],
                  note: str = "") -> None:
        rec = {"type": "end", "rollout_id": rollout_id, "status": status, "message": message,
               "fleet": fleet, "at": self.wallclock()}
        if note:
            rec["note"] = note
        await self._append(sorted(self.runtimes), rec)


@dataclass(frozen=True)
class Skipped:
    """A journal line that is not a record this version can use."""

    host: str
    line: int  # 1-based, in that host's file
    why: str

    def text(self) -> str:
        return f"{self.host} {JOURNAL_FILE} line {self.line}: {self.why}"


class JournalRead(NamedTuple):
    records: list[dict]  # valid records of every host, duplicates dropped, by time
    unreadable: dict[str, str]  # host -> why its journal could not be read at all
    skipped: list[Skipped]  # lines left out


def _text(v: Any) -> bool:
    return isinstance(v, str)


def _text_or_none(v: Any) -> bool:
    return v is None or isinstance(v, str)


def _time(v: Any) -> bool:
    # Python's json reads NaN and Infinity: a time must be a finite number.
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _count(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 1


def _names(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


def _tags_by_host(v: Any) -> bool:
    return isinstance(v, dict) and all(isinstance(k, str) and _text_or_none(x) for k, x in v.items())


# type -> field -> check of its value. Fields in REQUIRED must be there; the others may be missing
# (the reader has a default) but never of another kind.
FIELDS: dict[str, dict[str, Callable[[Any], bool]]] = {
    "start": {"action": _text, "to_tag": _text, "image_ref": _text, "operator": _text, "hosts": _names,
              "from": _tags_by_host, "batch_size": _count, "resumes": _text_or_none, "at": _time,
              "strategy": _text},
    "step": {"host": _text, "phase": _text, "detail": _text, "at": _time},
    "host": {"host": _text, "outcome": _text, "step": _text_or_none, "from_tag": _text_or_none, "to_tag": _text,
             "digest": _text_or_none, "seen": _text, "started": _time, "ended": _time},
    "end": {"status": _text, "message": _text, "fleet": _tags_by_host, "at": _time, "note": _text},
}
REQUIRED = {"start": (), "step": ("host",), "host": ("host",), "end": ()}


def check_record(rec: Any) -> str | None:
    """Why this parsed line is not a usable record, or None when it is."""
    if not isinstance(rec, dict):
        return "not a JSON object"
    kind = rec.get("type")
    if not isinstance(kind, str) or kind not in FIELDS:
        return f"unknown record type {visible(repr(kind))[:40]}"
    rid = rec.get("rollout_id")
    if not isinstance(rid, str) or not rid:
        return f"{kind} record without a rollout_id"
    for key in REQUIRED[kind]:
        if key not in rec:
            return f"{kind} record without '{key}'"
    for key, ok in FIELDS[kind].items():
        if key in rec and not ok(rec[key]):
            return f"{kind} record with a bad '{key}'"
    return None


def _shown(v: Any) -> Any:
    if isinstance(v, str):
        return visible(v)
    if isinstance(v, list):
        return [_shown(x) for x in v]
    if isinstance(v, dict):
        return {_shown(k): _shown(x) for k, x in v.items()}
    return v


async def read_records(runtimes: Mapping[str, HostRuntime]) -> JournalRead:
    """All hosts' records merged (duplicates dropped, by time), hosts that could not be read,
    and lines skipped (with host and line number)."""
    seen: set[str] = set()
    records: list[dict] = []
    unreadable: dict[str, str] = {}
    skipped: list[Skipped] = []
    for name in sorted(runtimes):
        try:
            text = await runtimes[name].state_read(JOURNAL_FILE)
        except Exception as exc:  # noqa: BLE001 - history is best effort per host
            unreadable[name] = visible(f"{type(exc).__name__}: {exc}")
            continue
        for number, line in enumerate((text or "").splitlines(), 1):
            line = line.strip()
            if not line or line in seen:
                continue
            seen.add(line)
            try:
                rec = json.loads(line)
            except ValueError:
                skipped.append(Skipped(name, number, "not valid JSON (a line torn by a crash?)"))
                continue
            why = check_record(rec)
            if why is not None:
                skipped.append(Skipped(name, number, why))
                continue
            records.append(_shown(rec))
    records.sort(key=lambda r: r.get("at", r.get("ended", 0.0)) or 0.0)
    return JournalRead(records, unreadable, skipped)


@dataclass
class HostResult:
    host: str
    outcome: str
    step: str | None
    from_tag: str | None
    to_tag: str
    digest: str | None
    seen: str
    started: float
    ended: float


@dataclass
class RolloutRecord:
    rollout_id: str
    action: str = "?"
    to_tag: str = "?"
    image_ref: str = ""
    operator: str = "?"
    started: float | None = None
    ended: float | None = None
    status: str | None = None  # None: no end record (running or interrupted)
    message: str = ""
    batch_size: int = 1
    resumes: str | None = None
    hosts: list[str] = field(default_factory=list)
    from_tags: dict[str, str | None] = field(default_factory=dict)
    results: dict[str, HostResult] = field(default_factory=dict)
    last_step: dict[str, tuple[str, str]] = field(default_factory=dict)  # host -> (phase, detail)
    fleet: dict[str, str | None] = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        return self.status is not None

    @property
    def digest(self) -> str | None:
        for r in self.results.values():
            if r.digest and r.to_tag == self.to_tag:
                return r.digest
        return None

    def host_state(self, host: str) -> str:
        """Where this host got to, in words, for an interrupted rollout."""
        if host in self.results:
            r = self.results[host]
            return r.outcome if not r.step else f"{r.outcome} at {r.step}"
        if host in self.last_step:
            phase, detail = self.last_step[host]
            if phase in ("pending", "pulling", "skipped"):
                return "not touched"  # pulling an image does not touch the running service
            if phase in ("done", "restored"):
                return phase
            return f"stopped during {phase}" + (f" ({detail})" if detail else "")
        return "not touched"


def summarize(records: list[dict]) -> list[RolloutRecord]:
    """Rollouts, oldest first."""
    by_id: dict[str, RolloutRecord] = {}
    for rec in records:
        rid = str(rec["rollout_id"])
        r = by_id.get(rid)
        if r is None:
            r = by_id[rid] = RolloutRecord(rollout_id=rid)
        t = rec["type"]
        if t == "start":
            r.action = rec.get("action", "?")
            r.to_tag = rec.get("to_tag", "?")
            r.image_ref = rec.get("image_ref", "")
            r.operator = rec.get("operator", "?")
            r.started = rec.get("at")
            r.hosts = list(rec.get("hosts") or [])
            r.from_tags = dict(rec.get("from") or {})
            r.batch_size = int(rec.get("batch_size") or 1)
            r.resumes = rec.get("resumes")
        elif t == "step":
            r.last_step[rec["host"]] = (rec.get("phase", "?"), rec.get("detail", ""))
        elif t == "host":
            r.results[rec["host"]] = HostResult(
                host=rec["host"], outcome=rec.get("outcome", "?"), step=rec.get("step"),
                from_tag=rec.get("from_tag"), to_tag=rec.get("to_tag", r.to_tag), digest=rec.get("digest"),
                seen=rec.get("seen", ""), started=rec.get("started") or 0.0, ended=rec.get("ended") or 0.0)
        elif t == "end":
            # The first end wins: a later "closed by resume" note must not rewrite history.
            if r.status is None:
                r.status = rec.get("status")
                r.message = rec.get("message", "")
                r.ended = rec.get("at")
                r.fleet = dict(rec.get("fleet") or {})
    return sorted(by_id.values(), key=lambda r: r.started or 0.0)


def unfinished(rollouts: list[RolloutRecord]) -> list[RolloutRecord]:
    return [r for r in rollouts if not r.finished and r.started is not None]


@dataclass(frozen=True)
class RanVersion:
    tag: str
    digest: str | None
    last_ran: float  # epoch seconds
    hosts: tuple[str, ...]


def versions_that_ran(rollouts: list[RolloutRecord]) -> list[RanVersion]:
    """Tags that actually ran on hosts (deployed successfully, or what hosts ran before a
    rollout), most recent first. Rollback offers these."""
    acc: dict[str, dict] = {}

    def note(tag, digest, when, host):
        if not tag:
            return
        a = acc.setdefault(tag, {"digest": None, "when": 0.0, "hosts": set()})
        if digest and not a["digest"]:
            a["digest"] = digest
        a["when"] = max(a["when"], when or 0.0)
        a["hosts"].add(host)

    for r in rollouts:
        for host, tag in r.from_tags.items():
            note(tag, None, r.started, host)
        for res in r.results.values():
            if res.outcome == "done":
                note(res.to_tag, res.digest, res.ended, res.host)
            elif res.outcome in ("restored", "interrupted"):
                note(res.from_tag, None, res.ended, res.host)
    out = [RanVersion(tag=t, digest=a["digest"], last_ran=a["when"], hosts=tuple(sorted(a["hosts"])))
           for t, a in acc.items()]
    return sorted(out, key=lambda v: v.last_ran, reverse=True)
