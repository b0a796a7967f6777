"""Plan preview: which hosts, in which batches, from which tag to which, and how long.

Pure functions: no I/O. `zdd_tui.project.rollout` gathers the facts (hosts, what they run, the LB
settings) and calls `build_plan`.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, replace

from zdd_tui.config import DeployConfig
from zdd_tui.rollout.events import Plan, PlannedHost
from zdd_tui.rollout.interfaces import LBSettings

# Rough per-host step costs for the estimate (seconds); for lb-drain the LB timing dominates anyway.
PULL_ESTIMATE = 5.0
STOP_ESTIMATE = 1.0
START_ESTIMATE = 2.0
HEALTH_ESTIMATE = 2.0  # local-swap: the new slot's own health checks
SWITCH_ESTIMATE = 1.0  # local-swap: the proxy applying the switch, and the old slot draining

# Adoptions that take the host out of the LB once (local-swap, a host with no proxy yet).
LEAVING = ("lb-drain", "detach")


@dataclass(frozen=True)
class HostFact:
    """What the planner needs to know about one host."""

    name: str
    address: str
    current_tag: str | None  # what its container runs now (None: no container)
    settled: bool = False  # running current_tag, serving, not draining
    # local-swap: whether the host runs its proxy (None: unknown, e.g. an lb-drain plan), and
    # whether its app answers the admin contract (how a host with no proxy is adopted).
    proxy: bool | None = None
    admin: bool = False

    @property
    def adoption(self) -> str | None:
        """How local-swap gives this host its proxy: fresh | lb-drain | detach (None: it has one)."""
        if self.proxy is not False:
            return None
        if self.current_tag is None:
            return "fresh"
        return "lb-drain" if self.admin else "detach"


def effective_batch_size(n_hosts: int, configured: int) -> int:
    """At most the configured size and at most n-1, so the LB always keeps a healthy droplet.

    A single-host fleet gets 1 (downtime is then unavoidable; the plan says so).
    """
    if n_hosts <= 1:
        return 1
    return max(1, min(int(configured), n_hosts - 1))


def batch_seconds(settings: LBSettings, pull: float = PULL_ESTIMATE, stop: float = STOP_ESTIMATE,
                  start: float = START_ESTIMATE) -> float:
    """One batch, on average: the LB needs (unhealthy + healthy - 1) intervals to notice both ways."""
    lb = (settings.unhealthy_threshold + settings.healthy_threshold - 1) * settings.interval
    return lb + pull + stop + start


def new_rollout_id() -> str:
    # Sortable by time, unique enough across operators.
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(3)


def build_plan(
    facts: list[HostFact],
    to_tag: str,
    image_ref: str,
    settings: LBSettings,
    deploy: DeployConfig,
    *,
    action: str = "deploy",
    rollout_id: str | None = None,
    strategy: str = "lb-drain",
    canary: bool | None = None,
) -> Plan:
    """Hosts already settled on `to_tag` are left out (listed in `Plan.unchanged`).

    Hosts in a worse state (no container, draining, not serving) go first: a resumed rollout then
    repairs the damaged host before it takes a healthy one out.

    `canary` (the --canary / --no-canary flags) overrides deploy.canary.enabled; see `wants_canary`.
    """
    todo = [f for f in facts if not (f.settled and f.current_tag == to_tag)]
    unchanged = tuple(f.name for f in facts if f not in todo)
    todo.sort(key=lambda f: (f.settled, f.name))
    if strategy == "local-swap":
        plan = _local_swap_plan(todo, unchanged, to_tag, image_ref, settings, deploy, action, rollout_id)
        if wants_canary(len(facts), action, deploy, canary):
            plan = with_canary(plan, float(deploy.canary.soak_seconds), float(deploy.canary.warmup_seconds))
        return plan
    size = effective_batch_size(len(facts), deploy.batch_size)
    hosts = tuple(
        PlannedHost(name=f.name, address=f.address, from_tag=f.current_tag, batch=i // size)
        for i, f in enumerate(todo)
    )
    n_batches = (len(hosts) + size - 1) // size
    per_batch = batch_seconds(settings)
    notes: list[str] = []
    if canary is None and deploy.canary.enabled is None and wants_canary(len(facts), action, deploy, None):
        notes.append("no canary: it needs the local-swap strategy")
    if len(facts) <= 1:
        notes.append("a single host: the service is unavailable while it is replaced")
    if size < deploy.batch_size:
        notes.append(f"batch size {deploy.batch_size} lowered to {size} so the LB keeps a healthy droplet")
    basis = (
        f"{n_batches} batch(es) x ((unhealthy {settings.unhealthy_threshold} + healthy "
        f"{settings.healthy_threshold} - 1) x interval {settings.interval:g}s + pull/stop/start "
        f"~{PULL_ESTIMATE + STOP_ESTIMATE + START_ESTIMATE:g}s)"
    )
    return Plan(
        rollout_id=rollout_id or new_rollout_id(),
        action=action,
        to_tag=to_tag,
        image_ref=image_ref,
        hosts=hosts,
        batch_size=size,
        estimated_seconds=n_batches * per_batch,
        estimate_basis=basis,
        unchanged=unchanged,
        notes=tuple(notes),
        strategy=strategy,
    )


def wants_canary(fleet: int, action: str, deploy: DeployConfig, override: bool | None) -> bool:
    """The flag decides when given; a rollback or resume returns to a version that already ran,
    so only the flag turns it on there; else deploy.canary.enabled, unset meaning a fleet of 3+."""
    if override is not None:
        return override
    if action != "deploy":
        return False
    enabled = deploy.canary.enabled
    return fleet >= 3 if enabled is None else enabled


def with_canary(plan: Plan, seconds: float, warmup: float = 0.0) -> Plan:
    """The first batch becomes the canary when it can be judged and put back: its hosts run the
    old version behind their proxy now, and other hosts still run it to compare with."""
    batches = plan.batches
    if not batches:
        return plan
    first = batches[0]
    adopted = dict(plan.adopt)
    why = ""
    if any(h.name in adopted for h in first):
        why = "the first batch gets its proxy in this rollout"
    elif any(h.from_tag is None for h in first):
        why = "the first batch runs nothing to go back to"
    elif len(batches) < 2:
        why = "no other host still on the old version to compare with"
    if why:
        return replace(plan, notes=(*plan.notes, f"no canary: {why}"))
    warm = f"warm-up {warmup:g}s and " if warmup > 0 else ""
    return replace(plan, canary_hosts=tuple(h.name for h in first), canary_seconds=seconds,
                   estimated_seconds=plan.estimated_seconds + warmup + seconds,
                   estimate_basis=f"{plan.estimate_basis}; + the canary's {warm}soak {seconds:g}s")


def swap_seconds() -> float:
    """One local-swap batch: start + own health + switch; the LB's cadence plays no part."""
    return START_ESTIMATE + HEALTH_ESTIMATE + SWITCH_ESTIMATE


def _local_swap_plan(todo: list[HostFact], unchanged: tuple[str, ...], to_tag: str,
                     image_ref: str, settings: LBSettings, deploy: DeployConfig, action: str,
                     rollout_id: str | None) -> Plan:
    """The first host alone (a bad version shows on one host), then batches of batch_size: hosts
    never leave the LB, so the size is not capped at n-1. A host adopted by leaving the LB goes
    alone in its own batch, one at a time."""
    size = max(1, int(deploy.batch_size))
    batches: list[list[HostFact]] = []
    current: list[HostFact] = []
    for f in todo:
        if f.adoption in LEAVING:
            if current:
                batches.append(current)
                current = []
            batches.append([f])
            continue
        current.append(f)
        if len(current) >= (1 if not batches else size):
            batches.append(current)
            current = []
    if current:
        batches.append(current)
    hosts = tuple(PlannedHost(name=f.name, address=f.address, from_tag=f.current_tag, batch=i)
                  for i, batch in enumerate(batches) for f in batch)
    adopt = tuple((f.name, f.adoption) for f in todo if f.adoption is not None)
    leaving = sum(1 for _, how in adopt if how in LEAVING)
    swaps = len(batches) - leaving
    estimate = PULL_ESTIMATE + swaps * swap_seconds() + leaving * (batch_seconds(settings) + swap_seconds())
    basis = (f"pull ~{PULL_ESTIMATE:g}s + {swaps} batch(es) x (start ~{START_ESTIMATE:g}s + health "
             f"~{HEALTH_ESTIMATE:g}s + switch ~{SWITCH_ESTIMATE:g}s), independent of the LB's check cadence")
    if leaving:
        basis += (f"; + {leaving} adoption(s) out of the LB and back, each (unhealthy "
                  f"{settings.unhealthy_threshold} + healthy {settings.healthy_threshold} - 1) x interval "
                  f"{settings.interval:g}s")
    return Plan(
        rollout_id=rollout_id or new_rollout_id(),
        action=action,
        to_tag=to_tag,
        image_ref=image_ref,
        hosts=hosts,
        batch_size=size,
        estimated_seconds=estimate,
        estimate_basis=basis,
        unchanged=unchanged,
        strategy="local-swap",
        adopt=adopt,
    )


def bound_lb_out(settings: LBSettings, margin: float) -> float:
    """How long the LB may take to stop sending traffic to a drained host."""
    return settings.unhealthy_threshold * settings.interval + settings.timeout + margin


def bound_lb_in(settings: LBSettings, margin: float) -> float:
    """How long the LB may take to send traffic to a healthy host again."""
    return settings.healthy_threshold * settings.interval + settings.timeout + margin
