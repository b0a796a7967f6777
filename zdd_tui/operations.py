"""What the console and the headless commands call to deploy, roll back and inspect rollouts.

Everything takes a `Session` (zdd_tui/session.py) and uses only: `session.config`,
`session.fleet` (rollout.interfaces.Cloud), `await session.droplets()`, `session.runtime(droplet)`
and, for rollback choices, `session.client.list_tags` when present. Nothing here prints.

Typical use (console or CLI):
    plan = await plan_deploy(session, tag)          # or plan_rollback(session, tag)
    ... show plan.text(), ask ...
    outcome = await run_deploy(session, plan, [listener], cancel_event)
Refusals before anything changes raise `RefusedError` (unknown tag, lock held: `LockHeld`) or
`UsageError` (malformed tag, no git HEAD); everything after the start is reported in the Outcome.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from zdd_tui.errors import EXIT_ERROR, EXIT_HALTED, EXIT_INTERRUPTED, EXIT_OK, EXIT_REFUSED, RefusedError, UsageError, ZddError
from zdd_tui.events import Listener
from zdd_tui.rollout.engine import Engine, EngineOptions
from zdd_tui.rollout.events import Outcome, OutcomeStatus, Plan
from zdd_tui.rollout.interfaces import Clock, HostRuntime
from zdd_tui.rollout.journal import (
    Journal,
    RanVersion,
    RolloutRecord,
    read_records,
    summarize,
    unfinished,
    versions_that_ran,
)
from zdd_tui.rollout.lock import LockHeld, LockInfo, acquire, read_locks, release
from zdd_tui.rollout.plan import HostFact, build_plan


_TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


def exit_code_for(outcome: Outcome) -> int:
    return {
        OutcomeStatus.SUCCESS: EXIT_OK,
        OutcomeStatus.HALTED: EXIT_HALTED,
        OutcomeStatus.ERROR: EXIT_ERROR,
        OutcomeStatus.REFUSED: EXIT_REFUSED,
        OutcomeStatus.INTERRUPTED: EXIT_INTERRUPTED,
    }[outcome.status]


def default_tag(cwd: str | Path | None = None) -> str:
    """`sha-` + the 7-character short HEAD of the git checkout in cwd (what the build step tags)."""
    try:
        out = subprocess.run(["git", "rev-parse", "--short=7", "HEAD"], cwd=cwd, capture_output=True,
                             text=True, timeout=10)
    except FileNotFoundError:
        raise UsageError("no --tag given and git is not installed to find the current commit",
                         "pass --tag sha-XXXXXXX") from None
    if out.returncode != 0:
        raise UsageError(f"no --tag given and {Path(cwd or '.').resolve()} is not a git checkout with a commit "
                         f"({out.stderr.strip() or 'git rev-parse failed'})", "pass --tag sha-XXXXXXX")
    return "sha-" + out.stdout.strip()[:7]  # same as the build step (images/git.py head_sha)


def check_tag(tag: str) -> str:
    if not isinstance(tag, str) or not _TAG_RE.match(tag):
        raise UsageError(f"'{tag}' is not a valid image tag (letters, digits, '_', '.', '-'; at most 128; "
                         "not starting with '.' or '-')", "tags look like sha-abc1234 or latest")
    return tag


def image_ref(config, tag: str) -> str:
    return f"{config.image_repo}:{tag}"


async def host_runtimes(session) -> dict[str, HostRuntime]:
    """name -> runtime for every droplet of the fleet (tagged), sorted by name."""
    droplets = await session.droplets()
    if not droplets:
        raise ZddError(f"no droplets tagged '{session.config.droplets.tag}'",
                       "run 'zdd-tui setup' (or 'zdd-tui sandbox up') first")
    return {d.name: session.runtime(d) for d in sorted(droplets, key=lambda d: d.name)}


async def _fact(name: str, rt: HostRuntime) -> HostFact:
    try:
        info = await rt.inspect()
    except Exception as exc:  # noqa: BLE001
        raise ZddError(f"cannot reach host {name}: {type(exc).__name__}: {exc}",
                       "check the host; nothing was changed") from None
    tag = info.tag if info is not None and info.state == "running" else None
    settled = False
    if tag is not None:
        try:
            st = await rt.stats()
            probe = await rt.probe_health()
            settled = st is not None and not st.draining and probe.healthy
        except Exception:  # noqa: BLE001 - unknown counts as "not settled": it gets redeployed
            settled = False
    return HostFact(name=name, address=rt.address, current_tag=tag, settled=settled)


# ---- state: lock, journal, interrupted -------------------------------------------------------

@dataclass
class RolloutState:
    locks: dict[str, LockInfo | None]
    history: list[RolloutRecord]  # newest first
    versions: list[RanVersion]  # that actually ran, newest first
    interrupted: RolloutRecord | None  # started, never finished, and nobody is running it
    running: RolloutRecord | None  # the rollout whose live holder has the lock
    unreadable: dict[str, str] = field(default_factory=dict)  # host -> why its journal could not be read

    @property
    def lock(self) -> LockInfo | None:
        for info in self.locks.values():
            if info is not None:
                return info
        return None

    def lines(self) -> list[str]:
        """For `zdd-tui status`: the lock and any interrupted rollout, in words."""
        out: list[str] = []
        lock = self.lock
        if lock is None:
            out.append("deploy lock: free")
        else:
            hosts = [h for h, i in self.locks.items() if i is not None]
            out.append(f"deploy lock: held on {', '.join(hosts)}: {lock.describe()}")
        r = self.interrupted
        if r is not None:
            out.append(f"INTERRUPTED rollout {r.rollout_id}: {r.action} {r.to_tag} by {r.operator} "
                       f"(never finished; the process stopped)")
            for h in r.hosts:
                out.append(f"  {h}: {r.host_state(h)}")
            out.append(f"  next: 'zdd-tui deploy --tag {r.to_tag}{' --break-lock' if lock else ''}' resumes it; "
                       f"'zdd-tui rollback <tag>{' --break-lock' if lock else ''}' rolls back")
        elif self.running is not None:
            out.append(f"rollout {self.running.rollout_id} running: {self.running.action} {self.running.to_tag}")
        if self.history:
            last = next((r for r in self.history if r.finished), None)
            if last is not None:
                out.append(f"last rollout: {last.rollout_id} {last.action} {last.to_tag}: {last.status}")
        for h, why in self.unreadable.items():
            out.append(f"journal on {h} unreadable: {why}")
        return out

    def to_dict(self) -> dict[str, Any]:
        def rec(r: RolloutRecord | None):
            if r is None:
                return None
            return {"rollout_id": r.rollout_id, "action": r.action, "to_tag": r.to_tag, "operator": r.operator,
                    "started": r.started, "ended": r.ended, "status": r.status, "message": r.message,
                    "hosts": {h: r.host_state(h) for h in r.hosts}}

        lock = self.lock
        return {
            "lock": None if lock is None else {**lock.__dict__, "stale": lock.stale(),
                                                "hosts": [h for h, i in self.locks.items() if i]},
            "interrupted": rec(self.interrupted),
            "running": rec(self.running),
            "last": rec(next((r for r in self.history if r.finished), None)),
            "versions": [v.__dict__ | {"hosts": list(v.hosts)} for v in self.versions],
            "unreadable": self.unreadable,
        }


async def state_of(runtimes: dict[str, HostRuntime]) -> RolloutState:
    locks = await read_locks(runtimes)
    records, unreadable = await read_records(runtimes)
    rollouts = summarize(records)
    live_ids = {i.rollout_id for i in locks.values() if i is not None and i.stale() is not True}
    open_ = unfinished(rollouts)
    running = next((r for r in reversed(open_) if r.rollout_id in live_ids), None)
    interrupted = next((r for r in reversed(open_) if r.rollout_id not in live_ids), None)
    return RolloutState(locks=locks, history=list(reversed(rollouts)), versions=versions_that_ran(rollouts),
                        interrupted=interrupted, running=running, unreadable=unreadable)


async def rollout_state(session) -> RolloutState:
    """Lock, history, versions that ran, and an interrupted rollout if there is one."""
    return await state_of(await host_runtimes(session))


async def rollback_choices(session) -> list[RanVersion]:
    """Versions that actually ran on the hosts and still exist in the registry, newest first."""
    state = await rollout_state(session)
    out = []
    for v in state.versions:
        try:
            if await session.fleet.tag_exists(v.tag):
                out.append(v)
        except Exception:  # noqa: BLE001 - offer it; the plan step checks again
            out.append(v)
    return out


# ---- plan ------------------------------------------------------------------------------------

async def _plan(session, tag: str, action: str) -> Plan:
    check_tag(tag)
    if not await session.fleet.tag_exists(tag):
        raise RefusedError(f"tag {tag} not found in the registry {session.config.image_repo}: nothing was changed",
                           "build and push it first ('zdd-tui build'), or pick a tag that exists")
    runtimes = await host_runtimes(session)
    facts = list(await asyncio.gather(*(_fact(n, rt) for n, rt in runtimes.items())))
    settings = await session.fleet.lb_settings()
    state = await state_of(runtimes)
    resumes = state.interrupted.rollout_id if state.interrupted else None
    if resumes and action == "deploy" and tag == state.interrupted.to_tag:
        action = "resume"
    plan = build_plan(facts, tag, image_ref(session.config, tag), settings, session.config.deploy, action=action)
    if resumes:
        from dataclasses import replace

        plan = replace(plan, resumes=resumes,
                       notes=plan.notes + (f"rollout {resumes} was interrupted; this plan "
                                           f"{'continues' if action == 'resume' else 'supersedes'} it",))
    return plan


async def plan_deploy(session, tag: str | None = None) -> Plan:
    """Plan a deploy of `tag` (default: sha- of the current git HEAD). RefusedError if the tag is
    not in the registry; UsageError if it is malformed."""
    return await _plan(session, tag if tag is not None else default_tag(), "deploy")


async def plan_rollback(session, tag: str) -> Plan:
    """Plan a rolling deploy of an earlier tag (it must exist in the registry)."""
    return await _plan(session, tag, "rollback")


# ---- run -------------------------------------------------------------------------------------

async def run_deploy(
    session,
    plan: Plan,
    listeners: Iterable[Listener] = (),
    cancel_event: Any = None,
    *,
    break_lock: bool = False,
    clock: Clock | None = None,
    options: EngineOptions | None = None,
) -> Outcome:
    """Lock the hosts, run the plan, release the lock. LockHeld (a RefusedError) if another
    rollout holds it. cancel_event (asyncio.Event or threading.Event): finish or restore the
    current step, then stop (Outcome INTERRUPTED)."""
    runtimes = await host_runtimes(session)
    missing = [h.name for h in plan.hosts if h.name not in runtimes]
    if missing:
        raise RefusedError(f"the plan names hosts no longer in the fleet: {', '.join(missing)}",
                           "plan again: the fleet changed")
    me = LockInfo.mine(plan.rollout_id, plan.to_tag, plan.action)
    await acquire(runtimes, me, break_lock=break_lock)
    try:
        journal = Journal(runtimes)
        await journal.compact()
        state = await state_of(runtimes)
        opts = options or EngineOptions()
        # Hosts left with no container by an interrupted rollout restore to what they ran before it.
        for r in ([state.interrupted] if state.interrupted else []):
            for host, tag in r.from_tags.items():
                if tag and host not in opts.fallback_prev:
                    opts.fallback_prev[host] = image_ref(session.config, tag)
            how = "continued" if plan.action == "resume" else "superseded"
            await journal.end(r.rollout_id, OutcomeStatus.INTERRUPTED.value,
                              f"the process stopped mid-rollout; {how} by {plan.rollout_id}",
                              fleet={}, note=how)
        settings = await session.fleet.lb_settings()
        engine = Engine(plan, runtimes, session.fleet, settings, session.config.deploy, listeners=listeners,
                        clock=clock, journal=journal, cancel=cancel_event, options=opts,
                        operator=me.holder)
        return await engine.run()
    finally:
        # Also on a hard cancel (the console closed): the unfinished journal marks it interrupted.
        await asyncio.shield(release(runtimes, plan.rollout_id))


async def break_lock(session) -> list[str]:
    """Remove a stale lock on purpose; refuses when its holder is demonstrably running."""
    runtimes = await host_runtimes(session)
    removed = []
    for name, info in (await read_locks(runtimes)).items():
        if info is None:
            continue
        if info.stale() is False:
            raise LockHeld(info, name)
        await runtimes[name].state_remove("deploy.lock")
        removed.append(name)
    return removed


__all__ = [
    "EXIT_INTERRUPTED", "RolloutState", "break_lock", "check_tag", "default_tag", "exit_code_for",
    "host_runtimes", "image_ref", "plan_deploy", "plan_rollback", "rollback_choices", "rollout_state",
    "run_deploy", "state_of",
]
