"""A fixed, deterministic console source: snapshot tests, screen tests and the UI benchmark.

The real thing end to end: a `FleetSource` on a real `Project` (zdd_tui.project) whose cloud,
hosts and clock are the engine tests' fake world (tests/rollout/fakes.py), so a rollout here is
the real engine's event order, progress and outcome. The data is chosen once (documentation IP
ranges, fixed digests, a fixed "now"), and time is virtual: it moves only while a rollout runs
and nothing else is ready, so a screen rendered from it is the same on every run.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from rollout.fakes import FakeClock, World, fake_project

from zdd_tui.cloud.models import (
    Droplet,
    ForwardingRule,
    HealthCheck,
    LoadBalancer,
    RegistryTag,
)
from zdd_tui.config import Config
from zdd_tui.events import Event
from zdd_tui.rollout.events import Outcome, Plan
from zdd_tui.ui.source import FleetSource

FIXED_NOW = datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC)

TAGS = (
    # tag, digest hex, size, age
    ("latest", "c0ffee11aa22bb33cc44dd55ee66ff7700112233445566778899aabbccddeeff", 48_213_504, timedelta(minutes=12)),
    ("sha-c0ffee1", "c0ffee11aa22bb33cc44dd55ee66ff7700112233445566778899aabbccddeeff", 48_213_504,
     timedelta(minutes=12)),
    ("sha-deadbee", "deadbee0112233445566778899aabbccddeeff00112233445566778899aabbcc", 48_190_976, timedelta(hours=3)),
    ("sha-b16b00b", "b16b00b5ffeeddccbbaa99887766554433221100ffeeddccbbaa998877665544", 48_101_120, timedelta(days=2)),
    ("sha-0ddba11", "0ddba11a0123456789abcdef0123456789abcdef0123456789abcdef01234567", 47_998_976, timedelta(days=9)),
)
LB_CHECK = HealthCheck("http", 8080, "/health", 10, 5, 3, 5)  # DO's defaults: every 10 s, out after 3, in after 5


def _droplet(i: int) -> Droplet:
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


class FakeSource(FleetSource):
    """`broken_tags` never become healthy (the engine halts and restores); `labels` what the
    registry pane says of tags (the sandbox's failure modes); `pause_after` holds
    the rollout (engine and time) after that many events until `gate` is set; `step_delay`
    real seconds between virtual-time steps (to watch or interrupt a rollout)."""

    def __init__(
        self,
        n_hosts: int = 3,
        running: str = "sha-b16b00b",
        broken_tags: tuple[str, ...] = ("sha-deadbee",),
        step_delay: float = 0.0,
        pause_after: int | None = None,
        config: Config | None = None,
        labels: dict[str, str] | None = None,
    ):
        config = config or Config()
        self.clock = FakeClock()
        names = tuple(f"app-{i}" for i in range(1, n_hosts + 1))
        world = World(self.clock, names=names, interval=LB_CHECK.check_interval_seconds,
                      timeout=LB_CHECK.response_timeout_seconds, unhealthy=LB_CHECK.unhealthy_threshold,
                      healthy=LB_CHECK.healthy_threshold, start_tag=running, rate_hz=2.0)
        digests = {tag: "sha256:" + digest for tag, digest, _, _ in TAGS}
        for tag, _, _, _ in TAGS:
            if tag != running:
                world.add_version(tag, "unhealthy" if tag in broken_tags else "ok")
            world.registry[tag].digest = digests[tag]
        for name, h in world.hosts.items():
            h.container.image_ref = f"{config.image_repo}:{running}"
            h.logs = self._logs_of(h)
            # Running for a while already: the LB has seen every host pass its checks.
            h.container.service.checkers["10.1.0.1"] = [LB_CHECK.healthy_threshold, 0, 0.0]
            world.lb_counts[name] = [LB_CHECK.healthy_threshold, 0]
        droplets = [_droplet(i) for i in range(1, n_hosts + 1)]
        lb = LoadBalancer(
            id="4de7ac8b-495b-4884-9a69-1050c6793cd6", name="zdd-app-lb", ip="198.51.100.7", status="active",
            region="nyc3", tag="zdd-app", droplet_ids=tuple(d.id for d in droplets),
            forwarding_rules=(ForwardingRule("http", 80, "http", 8080),), health_check=LB_CHECK,
        )
        tags = [RegistryTag("app", tag, digests[tag], size, FIXED_NOW - age) for tag, _, size, age in TAGS]
        project = fake_project(world, config, droplets=droplets, lb=lb, tags=tags,
                               wallclock=lambda: FIXED_NOW.timestamp() + self.clock.now(), lag=0.0)
        # Wall time moves with the virtual clock (fixed at the start): journals and ages agree.
        if labels is not None:  # what the sandbox's registry says of its failure modes
            async def tag_labels() -> dict[str, str]:
                return dict(labels)

            project.tag_labels = tag_labels  # type: ignore[method-assign]
        super().__init__(project, label="fake fleet (fixed data)",
                         wall_now=lambda: FIXED_NOW + timedelta(seconds=self.clock.now()))
        self.sandbox = True  # labelled as a stand-in, as the sandbox is
        self.world = world
        self.step_delay = step_delay
        self.pause_after = pause_after
        self.gate = asyncio.Event()
        self.paused = asyncio.Event()
        self.events_sent = 0
        self.closed = False
        self._holding = False

    @staticmethod
    def _logs_of(host: Any) -> Callable[..., Any]:
        async def logs(tail: int = 100) -> list[str]:
            tag = host.container.tag if host.container else "?"
            lines = [f"zdd_service {tag} listening on 0.0.0.0:8080 (admin 127.0.0.1:9090)"]
            lines += [f"GET / 200 {i % 7 + 1}ms" for i in range(5)]
            return lines[-tail:]

        return logs

    @property
    def running(self) -> dict[str, str | None]:
        """host -> the tag it runs."""
        return self.world.tags()

    def drain(self, host: str) -> None:
        """The service on `host` starts failing its health check as draining (as the engine's drain does)."""
        self.world.hosts[host].container.service.draining = True

    async def plan(self, action: str, tag: str) -> Plan:
        plan = await super().plan(action, tag)
        return replace(plan, rollout_id=f"fixed-{action}-{tag}")  # the real one carries the time

    async def run(self, plan: Plan, listener: Callable[[Event], Any], cancel: asyncio.Event) -> Outcome:
        def counted(event: Event) -> Any:
            self.events_sent += 1
            if self.pause_after is not None and self.events_sent == self.pause_after:
                self._holding = True
                self.paused.set()
            return listener(event)

        return await self._drive(super().run(plan, counted, cancel))

    async def _drive(self, coro: Any) -> Any:
        """Run `coro` in virtual time: when nothing is ready, time moves to the next thing due."""
        task = asyncio.ensure_future(coro)
        try:
            while True:
                await self.clock._settle()
                if task.done():
                    return task.result()
                if self._holding:
                    await self.gate.wait()
                    self._holding = False
                    continue
                if self.step_delay:
                    await asyncio.sleep(self.step_delay)
                if not self.clock.advance():
                    await asyncio.sleep(0.01)
        finally:
            if not task.done():
                task.cancel()

    async def close(self) -> None:
        self.closed = True
        await super().close()
