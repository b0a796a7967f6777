"""Deploy, roll back and break the lock: plan (refusals before anything changes), then run the
plan through the engine under the hosts' deploy lock. Nothing here prints.

Refusals raise `RefusedError` (unknown tag; `LockHeld` when another rollout holds the lock) or
`UsageError` (malformed tag, no git HEAD); everything after the start is in the Outcome.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zdd_tui.config import Config, key_for
from zdd_tui.errors import (
    EXIT_ERROR,
    EXIT_HALTED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_REFUSED,
    RefusedError,
    UsageError,
    ZddError,
)
from zdd_tui.events import Listener
from zdd_tui.project.app_secrets import deploy_notes, release_step
from zdd_tui.project.app_secrets import give as give_secrets
from zdd_tui.project.app_secrets import require as require_secrets
from zdd_tui.project.state import state_of
from zdd_tui.rollout.engine import Engine, EngineOptions
from zdd_tui.rollout.events import Outcome, OutcomeStatus, Plan
from zdd_tui.rollout.interfaces import HostRuntime, SwapHost
from zdd_tui.rollout.journal import Journal, RanVersion
from zdd_tui.rollout.lock import LockHeld, LockInfo, acquire, read_locks, release
from zdd_tui.rollout.plan import LEAVING, HostFact, build_plan

if TYPE_CHECKING:
    from zdd_tui.project.open import Project

_TAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")


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
    if not isinstance(tag, str) or not _TAG_RE.fullmatch(tag):
        raise UsageError(f"'{tag}' is not a valid image tag (letters, digits, '_', '.', '-'; at most 128; "
                         "not starting with '.' or '-')", "tags look like sha-abc1234 or latest")
    return tag


def image_ref(config: Config, tag: str) -> str:
    return f"{config.image_repo}:{tag}"


async def _fact(name: str, rt: HostRuntime, strategy: str) -> HostFact:
    if strategy == "local-swap":
        return await _swap_fact(name, rt)
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


async def _swap_fact(name: str, rt: HostRuntime) -> HostFact:
    """local-swap: the current tag is what runs on the slot the proxy sends traffic to; a host
    with no proxy yet is described for its adoption (runs nothing, or answers the admin contract)."""
    if not isinstance(rt, SwapHost):
        raise RefusedError(f"host {name}: its runtime cannot run local-swap (no proxy support); nothing was changed",
                           "deploy with --strategy lb-drain")
    try:
        proxy = await rt.proxy()
        if not proxy.installed:
            info = await rt.inspect()
            tag = info.tag if info is not None and info.state == "running" else None
            admin = False
            if tag is not None:
                try:
                    admin = await rt.stats() is not None
                except Exception:  # noqa: BLE001 - no admin contract: adopted through the cloud's API
                    admin = False
            return HostFact(name=name, address=rt.address, current_tag=tag, proxy=False, admin=admin)
        active = proxy.active_slot
        running = [c for c in await rt.slot_containers() if active is not None and c.slot == active
                   and c.state == "running"]
    except Exception as exc:  # noqa: BLE001
        raise ZddError(f"cannot reach host {name}: {type(exc).__name__}: {exc}",
                       "check the host; nothing was changed") from None
    tag = running[0].tag if running else None
    settled = False
    if tag is not None and active is not None and proxy.running and proxy.healthy:
        try:
            settled = (await rt.probe_slot(active)).healthy
        except Exception:  # noqa: BLE001 - unknown counts as "not settled": it gets redeployed
            settled = False
    return HostFact(name=name, address=rt.address, current_tag=tag, settled=settled, proxy=True)


def check_strategy(strategy: str) -> str:
    choices = dict(key_for("deploy.strategy").choices)
    if strategy not in choices:
        raise UsageError(f"'{strategy}' is not a deploy strategy", f"one of: {', '.join(choices)}")
    return strategy


async def rollback_choices(project: Project) -> list[RanVersion]:
    """Versions that actually ran on the hosts and still exist in the registry, newest first."""
    state = await project.rollout_state()
    out = []
    for v in state.versions:
        try:
            if await project.cloud.tag_exists(v.tag):
                out.append(v)
        except Exception:  # noqa: BLE001 - offer it; the plan step checks again
            out.append(v)
    return out


def check_canary(strategy: str, canary: bool | None, config: Config) -> None:
    """The canary compares proxies' counters: asked for on lb-drain it is a usage error."""
    if strategy == "local-swap":
        return
    if canary is True:
        raise UsageError(f"--canary needs the local-swap strategy (this run uses {strategy}): nothing was changed",
                         "add --strategy local-swap, or drop --canary")
    if canary is None and config.deploy.canary.enabled is True:
        raise UsageError(f"deploy.canary.enabled is true but the strategy is {strategy}, and the canary needs "
                         "local-swap: nothing was changed",
                         "set deploy.strategy: local-swap (or pass --strategy local-swap), or pass --no-canary, "
                         "or set deploy.canary.enabled: false")


async def _plan(project: Project, tag: str, action: str, strategy: str | None = None,
                canary: bool | None = None) -> Plan:
    check_tag(tag)
    config = project.config
    strategy = check_strategy(strategy or config.deploy.strategy)
    if action == "deploy" or canary is True:
        check_canary(strategy, canary, config)
    await require_secrets(project)  # every missing secret is named before anything else is asked
    if not await project.cloud.tag_exists(tag):
        raise RefusedError(f"tag {tag} not found in the registry {config.image_repo}: nothing was changed",
                           "build and push it first ('zdd-tui build'), or pick a tag that exists")
    runtimes = await project.host_runtimes()
    facts = list(await asyncio.gather(*(_fact(n, rt, strategy) for n, rt in runtimes.items())))
    settings = await project.cloud.lb_settings()
    state = await state_of(runtimes)
    interrupted = state.interrupted
    if interrupted is not None and action == "deploy" and tag == interrupted.to_tag:
        action = "resume"
    plan = build_plan(facts, tag, image_ref(config, tag), settings, config.deploy, action=action,
                      strategy=strategy, canary=canary)
    leaving = [name for name, how in plan.adopt if how in LEAVING]
    if leaving and len(facts) < 2:
        raise RefusedError(f"{leaving[0]} serves traffic without a proxy and is the only host: installing the proxy "
                           "would take it out of the LB with no other host serving; nothing was changed",
                           "add a droplet first, or deploy once with --strategy lb-drain (the plan says it "
                           "is unavailable while replaced)")
    plan = replace(plan, notes=(*plan.notes, *deploy_notes(config, plan)))
    if state.skipped:
        lines = state.skipped_lines(3)
        note = f"journal: {len(state.skipped)} unusable line(s) skipped: {'; '.join(lines)}"
        plan = replace(plan, notes=(*plan.notes, note))
    if interrupted is not None:
        resumes = interrupted.rollout_id
        note = f"rollout {resumes} was interrupted; this plan {'continues' if action == 'resume' else 'supersedes'} it"
        plan = replace(plan, resumes=resumes, notes=(*plan.notes, note))
    return plan


async def plan_deploy(project: Project, tag: str | None = None, strategy: str | None = None,
                      canary: bool | None = None) -> Plan:
    """Plan a deploy of `tag` (default: sha- of the current git HEAD) with `strategy` (default:
    the config's); `canary` (True/False) overrides deploy.canary.enabled. RefusedError if the tag
    is not in the registry; UsageError if it is malformed, or a canary is asked for on lb-drain."""
    return await _plan(project, tag if tag is not None else default_tag(), "deploy", strategy, canary)


async def plan_rollback(project: Project, tag: str | None = None, strategy: str | None = None,
                        canary: bool | None = None) -> Plan:
    """Plan a rolling deploy of an earlier tag (it must exist in the registry); with no tag, of
    the version that ran before the current one (RefusedError when the journals know none). No
    canary unless `canary` is True: it returns to a version that already ran."""
    if tag is None:
        tag = await previous_tag(project)
    return await _plan(project, tag, "rollback", strategy, canary)


async def previous_tag(project: Project) -> str:
    """The version that ran before the current one, per the hosts' journals and the registry."""
    versions = await project.versions()
    prev = versions.previous
    if prev is None:
        gone = [v.tag for v in versions.ran if not v.current and v.tag in versions.missing]
        why = (f"the earlier versions ({', '.join(gone)}) are no longer in the registry" if gone else
               "the hosts' journals show no version before the one running now")
        raise RefusedError(f"no previous version to roll back to: {why}; nothing was changed",
                           "name a tag: 'zdd-tui rollback TAG' ('zdd-tui rollback --list' shows what ran)")
    return prev.tag


async def run(
    project: Project,
    plan: Plan,
    listeners: Iterable[Listener] = (),
    cancel: Any = None,
    *,
    break_lock: bool = False,
    options: EngineOptions | None = None,
) -> Outcome:
    """Lock the hosts, run the plan, release the lock. LockHeld (a RefusedError) if another
    rollout holds it. cancel (asyncio.Event or threading.Event): finish or restore the current
    step, then stop (Outcome INTERRUPTED)."""
    runtimes = await project.host_runtimes()
    missing = [h.name for h in plan.hosts if h.name not in runtimes]
    if missing:
        raise RefusedError(f"the plan names hosts no longer in the fleet: {', '.join(missing)}",
                           "plan again: the fleet changed")
    secrets = await require_secrets(project)
    me = LockInfo.mine(plan.rollout_id, plan.to_tag, plan.action)
    await acquire(runtimes, me, break_lock=break_lock)
    give_secrets(runtimes, secrets)
    try:
        wall: dict[str, Any] = {"wallclock": project.wallclock} if project.wallclock else {}
        journal = Journal(runtimes, **wall)
        await journal.compact()
        state = await state_of(runtimes)
        opts = options or EngineOptions()
        if opts.before_changes is None:  # a copy: a caller's options may serve another run
            opts = replace(opts, before_changes=release_step(project, plan, runtimes, secrets, opts.env))
        # Hosts left with no container by an interrupted rollout restore to what they ran before it.
        for r in ([state.interrupted] if state.interrupted else []):
            for host, tag in r.from_tags.items():
                if tag and host not in opts.fallback_prev:
                    opts.fallback_prev[host] = image_ref(project.config, tag)
            how = "continued" if plan.action == "resume" else "superseded"
            await journal.end(r.rollout_id, OutcomeStatus.INTERRUPTED.value,
                              f"the process stopped mid-rollout; {how} by {plan.rollout_id}",
                              fleet={}, note=how)
        settings = await project.cloud.lb_settings()
        engine = Engine(plan, runtimes, project.cloud, settings, project.config.deploy, listeners=listeners,
                        clock=project.clock, journal=journal, cancel=cancel, options=opts,
                        operator=me.holder, **wall)
        return await engine.run()
    finally:
        give_secrets(runtimes, None)
        # Also on a hard cancel (the console closed): the unfinished journal marks it interrupted.
        await asyncio.shield(release(runtimes, plan.rollout_id))


async def break_lock(project: Project) -> list[str]:
    """Remove a stale lock on purpose; refuses when its holder is demonstrably running."""
    runtimes = await project.host_runtimes()
    removed = []
    for name, info in (await read_locks(runtimes)).items():
        if info is None:
            continue
        if info.stale() is False:
            raise LockHeld(info, name)
        await runtimes[name].state_remove("deploy.lock")
        removed.append(name)
    return removed
