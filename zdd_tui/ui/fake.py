"""A fixed, deterministic FleetSource: snapshot tests, screen tests and the UI benchmark.

Everything here is data chosen once (documentation IP ranges, fixed digests, a fixed "now"),
and rollouts advance a fake clock by whole seconds, so a screen rendered from it is the same on
every run. It mimics the engine's event order (see zdd_tui/rollout/events.py) closely enough for
the screens; the real engine drives the sandbox tests.
"""

from __future__ import annotations

import asyncio
import inspect
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

from zdd_tui.cloud.models import Droplet, ForwardingRule, HealthCheck, LoadBalancer, RateLimit, RegistryTag
from zdd_tui.config import Config
from zdd_tui.errors import RefusedError
from zdd_tui.events import Event, LogLine
from zdd_tui.rollout.events import (
    HealthChanged,
    Outcome,
    OutcomeStatus,
    Phase,
    PhaseChanged,
    Plan,
    PlannedHost,
    Progress,
    RolloutFinished,
    RolloutPlanned,
)
from zdd_tui.rollout.interfaces import ContainerInfo, HealthProbe
from zdd_tui.ui.state import HostState, RolloutInfo

FIXED_NOW = datetime(2026, 11, 26, 12, 0, 0, tzinfo=timezone.utc)

TAGS = (
    # tag, digest hex, size, age
    ("latest", "c0ffee11aa22bb33cc44dd55ee66ff7700112233445566778899aabbccddeeff", 48_213_504, timedelta(minutes=12)),
    ("sha-c0ffee1", "c0ffee11aa22bb33cc44dd55ee66ff7700112233445566778899aabbccddeeff", 48_213_504, timedelta(minutes=12)),
    ("sha-deadbee", "deadbee0112233445566778899aabbccddeeff00112233445566778899aabbcc", 48_190_976, timedelta(hours=3)),
    ("sha-b16b00b", "b16b00b5ffeeddccbbaa99887766554433221100ffeeddccbbaa998877665544", 48_101_120, timedelta(days=2)),
    ("sha-0ddba11", "0ddba11a0123456789abcdef0123456789abcdef0123456789abcdef01234567", 47_998_976, timedelta(days=9)),
)

# The steps a host goes through, with the share of the host's bar each one completes.
STEPS = (
    (Phase.PULLING, 0.15),
    (Phase.DRAINING, 0.25),
    (Phase.WAITING_LB_OUT, 0.45),
    (Phase.STOPPING, 0.55),
    (Phase.STARTING, 0.65),
    (Phase.WAITING_HEALTHY, 0.8),
    (Phase.WAITING_LB_IN, 1.0),
)


class FakeSource:
    sandbox = True
    label = "fake fleet (fixed data)"

    def __init__(
        self,
        n_hosts: int = 3,
        running: str = "sha-b16b00b",
        broken_tags: tuple[str, ...] = ("sha-deadbee",),
        step_delay: float = 0.0,
        pause_after: int | None = None,
        config: Config | None = None,
    ):
        self.config = config or Config()
        self.n_hosts = n_hosts
        self.broken_tags = set(broken_tags)
        self.step_delay = step_delay
        self.t = 0.0  # the fake engine clock
        self._requests = 0
        self.running = {f"app-{i}": running for i in range(1, n_hosts + 1)}
        self.draining: set[str] = set()
        self.lock: RolloutInfo | None = None
        # Tests set `gate` to stop a rollout part-way (pause_after events), then set it to go on.
        self.pause_after = pause_after
        self.gate = asyncio.Event()
        self.paused = asyncio.Event()
        self.events_sent = 0
        self.closed = False

    # -- API-ish calls (counted like DO requests) -----------------------------------------
    @property
    def requests_made(self) -> int:
        return self._requests

    @property
    def rate_limit(self) -> RateLimit:
        return RateLimit(limit=5000, remaining=5000 - self._requests, reset_epoch=0)

    def wall_now(self) -> datetime:
        return FIXED_NOW

    def now(self) -> float:
        return self.t

    def _droplet(self, i: int) -> Droplet:
        return Droplet(
            id=1000 + i,
            name=f"app-{i}",
            status="active",
            region="nyc3",
            size="s-1vcpu-1gb",
            public_ipv4=f"203.0.113.{10 + i}" if i < 240 else f"198.51.100.{i - 229}",
            private_ipv4=f"10.10.0.{10 + i}",
            tags=("zdd-app",),
        )

    async def droplets(self) -> list[Droplet]:
        self._requests += max(1, -(-self.n_hosts // 200))  # one request per page of 200
        return [self._droplet(i) for i in range(1, self.n_hosts + 1)]

    async def load_balancer(self) -> LoadBalancer:
        self._requests += 1
        return LoadBalancer(
            id="4de7ac8b-495b-4884-9a69-1050c6793cd6",
            name="zdd-app-lb",
            ip="198.51.100.7",
            status="active",
            region="nyc3",
            tag="zdd-app",
            droplet_ids=tuple(1000 + i for i in range(1, self.n_hosts + 1)),
            forwarding_rules=(ForwardingRule("http", 80, "http", 8080),),
            health_check=HealthCheck("http", 8080, "/health", 10, 5, 3, 5),
        )

    async def lb_health(self) -> dict[str, bool | None]:
        self._requests += 1
        return {name: name not in self.draining for name in self.running}

    async def registry_tags(self) -> list[RegistryTag]:
        self._requests += 1
        return [
            RegistryTag("app", tag, "sha256:" + digest, size, FIXED_NOW - age) for tag, digest, size, age in TAGS
        ]

    # -- host calls (no API) -----------------------------------------------------------------
    async def hosts(self) -> dict[str, HostState]:
        out = {}
        for name, tag in self.running.items():
            draining = name in self.draining
            probe = HealthProbe(healthy=not draining, status=503 if draining else 200, detail="draining" if draining else "ok")
            digest = next(("sha256:" + d for t, d, _, _ in TAGS if t == tag), None)
            container = ContainerInfo(name="app", image_ref=f"registry.digitalocean.com/zdd-registry/app:{tag}", tag=tag, digest=digest, state="running")
            out[name] = HostState(probe=probe, container=container)
        return out

    async def rollout(self) -> RolloutInfo | None:
        return self.lock

    async def logs(self, host: str, tail: int = 200) -> list[str]:
        tag = self.running.get(host, "?")
        lines = [f"zdd_service {tag} listening on 0.0.0.0:8080 (admin 127.0.0.1:9090)"]
        lines += [f"GET / 200 {i % 7 + 1}ms" for i in range(5)]
        return lines[-tail:]

    async def close(self) -> None:
        self.closed = True

    # -- rollouts ----------------------------------------------------------------------------
    async def plan(self, action: str, tag: str) -> Plan:
        if tag not in {t for t, *_ in TAGS}:
            raise RefusedError(f"tag {tag!r} is not in the registry", hint="pick a tag from the registry pane")
        hosts = tuple(
            PlannedHost(name=n, address=f"203.0.113.{10 + i}", from_tag=self.running[n], batch=i)
            for i, n in enumerate(sorted(self.running, key=_natural))
            if self.running[n] != tag
        )
        return Plan(
            rollout_id=f"fixed-{action}-{tag}",
            action=action,
            to_tag=tag,
            image_ref=f"registry.digitalocean.com/zdd-registry/app:{tag}",
            hosts=hosts,
            batch_size=1,
            estimated_seconds=78.0 * len(hosts),
            estimate_basis="(3 unhealthy + 5 healthy - 1) x 10 s LB interval + 8 s pull/stop/start, per batch",
        )

    async def run(self, plan: Plan, listener: Callable[[Event], Any], cancel: asyncio.Event) -> Outcome:
        async def emit(ev: Event) -> None:
            self.events_sent += 1
            r = listener(ev)
            if inspect.isawaitable(r):
                await r
            if self.pause_after is not None and self.events_sent == self.pause_after:
                self.paused.set()
                await self.gate.wait()
            if self.step_delay:
                await asyncio.sleep(self.step_delay)

        start = self.t
        self.lock = RolloutInfo(holder="console@fixed", action=plan.action, to_tag=plan.to_tag, ours=True)
        await emit(RolloutPlanned(plan, at=self.t))
        total = len(plan.hosts)
        broken = plan.to_tag in self.broken_tags
        status, failed, step, seen, message = OutcomeStatus.SUCCESS, None, None, "", ""
        done = 0
        for i, h in enumerate(plan.hosts):
            if cancel.is_set():
                status = OutcomeStatus.INTERRUPTED
                message = f"stopped by the operator after {done} of {total} hosts; the current step was finished"
                for rest in plan.hosts[i:]:
                    await emit(PhaseChanged(rest.name, Phase.SKIPPED, at=self.t))
                break
            host_start = self.t
            for phase, frac in STEPS:
                self.t += 1.0
                if phase is Phase.DRAINING:
                    self.draining.add(h.name)
                    await emit(HealthChanged(h.name, "direct", False, "draining", at=self.t))
                await emit(PhaseChanged(h.name, phase, at=self.t))
                await emit(LogLine(h.name, f"{phase.words}", at=self.t))
                if broken and phase is Phase.WAITING_HEALTHY:
                    break
                await emit(Progress(h.name, frac, (done + frac) / total, at=self.t))
                if phase is Phase.STARTING:
                    self.running[h.name] = plan.to_tag
                if phase is Phase.WAITING_LB_IN:
                    self.draining.discard(h.name)
                    await emit(HealthChanged(h.name, "direct", True, "ok", at=self.t))
                    await emit(HealthChanged(h.name, "lb", True, "", at=self.t))
            if broken:
                self.t += 1.0
                seen = "GET /health answered 503 {\"status\":\"failing\"} for 60 s"
                await emit(LogLine(h.name, f"health check failed: {seen}", level="error", at=self.t))
                await emit(PhaseChanged(h.name, Phase.FAILED, seen, at=self.t))
                await emit(PhaseChanged(h.name, Phase.RESTORING, at=self.t))
                self.running[h.name] = h.from_tag or self.running[h.name]
                self.draining.discard(h.name)
                self.t += 1.0
                await emit(PhaseChanged(h.name, Phase.RESTORED, f"back on {h.from_tag}", at=self.t))
                await emit(HealthChanged(h.name, "direct", True, "ok", at=self.t))
                for rest in plan.hosts[i + 1 :]:
                    await emit(PhaseChanged(rest.name, Phase.SKIPPED, at=self.t))
                status, failed, step = OutcomeStatus.HALTED, h.name, Phase.WAITING_HEALTHY
                message = f"{h.name} did not become healthy on {plan.to_tag}; it runs {h.from_tag} again"
                break
            done += 1
            await emit(PhaseChanged(h.name, Phase.DONE, at=self.t))
            await emit(LogLine(h.name, f"done in {self.t - host_start:.0f}s", at=self.t))
        if status is OutcomeStatus.SUCCESS:
            message = f"{total} of {total} hosts run {plan.to_tag}"
        outcome = Outcome(
            status=status,
            message=message,
            to_tag=plan.to_tag,
            failed_host=failed,
            failed_step=step,
            seen=seen,
            restored=status is OutcomeStatus.HALTED,
            fleet=dict(self.running),
            duration_seconds=self.t - start,
        )
        self.lock = None
        await emit(RolloutFinished(outcome, at=self.t))
        return outcome


def _natural(name: str) -> tuple:
    head, _, num = name.rpartition("-")
    return (head, int(num)) if num.isdigit() else (name, 0)
