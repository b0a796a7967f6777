"""The canary gate (local-swap): the first batch serves the new version for `soak_seconds` while
its old container keeps running, then its proxies' counters over that window are compared with
those of the hosts still on the old version over the same window. The window begins after
`warmup_seconds`: a process that just started answers its first seconds slower (imports, caches,
connections), which says nothing about the version.

`judge` is the pure comparison; `Soak` drives the window (a live CanaryUpdate about once a second,
the verdict at the end) and is started by the engine after the first batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from zdd_tui.config import CanaryConfig
from zdd_tui.rollout.events import CanaryReport, CanaryState, CanaryUpdate
from zdd_tui.traffic import INF, Counters, Rates, combine, common_bounds, on_bounds, quantile, rates

if TYPE_CHECKING:
    from zdd_tui.rollout.engine import Engine
    from zdd_tui.rollout.watch import Reading, Watch

EPSILON = 1e-9  # a share or latency exactly at its threshold passes, whatever the float rounding


@dataclass(frozen=True)
class Verdict:
    state: CanaryState
    reason: str


def _pct(share: float) -> str:
    return f"{share * 100:.2f}%"


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f}ms"


def judge(canary: Counters, baseline: Counters, cfg: CanaryConfig) -> Verdict:
    """Either side under min_requests: INSUFFICIENT. The canary's 5xx share above the old
    version's by more than max_error_rate_increase, or its p95 above max_latency_ratio times the
    old version's (never less than latency_floor_ms): FAILED. Else PASSED. The reason names the
    numbers and the threshold that decided."""
    if canary.requests < cfg.min_requests or baseline.requests < cfg.min_requests:
        return Verdict(CanaryState.INSUFFICIENT,
                       f"too few requests to judge: {canary.requests} on the new version, {baseline.requests} on "
                       f"the old (at least {cfg.min_requests} each)")
    share_new = canary.errors / canary.requests
    share_old = baseline.errors / baseline.requests
    increase = share_new - share_old
    errors = (f"5xx {_pct(share_new)} on the new version vs {_pct(share_old)} on the old "
              f"({increase * 100:+.2f} points, at most {cfg.max_error_rate_increase * 100:+.2f} allowed)")
    if increase > cfg.max_error_rate_increase + EPSILON:
        return Verdict(CanaryState.FAILED, errors)
    # Both sides on the bounds they share (proxies installed by different versions may have
    # different buckets): a side on coarser buckets interpolates its p95 higher inside a wide
    # bucket, which alone could decide the comparison. Sharing no finite bound, each keeps its own.
    keep = common_bounds(canary.buckets, baseline.buckets)
    new_b, old_b = canary.buckets, baseline.buckets
    if any(le != INF for le in keep):
        new_b, old_b = on_bounds(new_b, keep), on_bounds(old_b, keep)
    p95_new = quantile(0.95, new_b)
    p95_old = quantile(0.95, old_b)
    if p95_new is None or p95_old is None:
        return Verdict(CanaryState.PASSED, errors + "; no latency histogram to compare")
    limit = cfg.max_latency_ratio * max(p95_old, cfg.latency_floor_ms / 1000)
    latency = (f"p95 {_ms(p95_new)} on the new version vs {_ms(p95_old)} on the old (at most {_ms(limit)} "
               f"allowed: {cfg.max_latency_ratio:g}x the old, at least {cfg.latency_floor_ms}ms)")
    if p95_new > limit + EPSILON:
        return Verdict(CanaryState.FAILED, latency)
    return Verdict(CanaryState.PASSED, f"{errors}; {latency}")


def action_for(state: CanaryState, cfg: CanaryConfig) -> str:
    if state is CanaryState.PASSED:
        return "the new version goes to the other hosts"
    if state is CanaryState.INSUFFICIENT and cfg.on_insufficient_traffic == "proceed":
        return "not judged; the new version goes to the other hosts (on_insufficient_traffic: proceed)"
    why = " (on_insufficient_traffic: halt)" if state is CanaryState.INSUFFICIENT else ""
    return f"the canary hosts go back to the old version and the rollout halts{why}"


def holds(state: CanaryState, cfg: CanaryConfig) -> bool:
    """The verdict lets the rollout go on."""
    return state is CanaryState.PASSED or (
        state is CanaryState.INSUFFICIENT and cfg.on_insufficient_traffic == "proceed")


class Soak:
    """One soak window: the canary hosts on the new version against the baseline hosts, after a
    warm-up that is shown but not judged."""

    def __init__(self, engine: Engine, watch: Watch, canary_hosts: tuple[str, ...],
                 baseline_hosts: tuple[str, ...]):
        self.e = engine
        self.watch = watch
        self.canary_hosts = canary_hosts
        self.baseline_hosts = baseline_hosts
        self.cfg = engine.deploy.canary
        self.seconds = float(engine.plan.canary_seconds)
        self.warmup = float(self.cfg.warmup_seconds)
        self._since: dict[str, Reading | None] = {}
        self._start = 0.0
        self._warming = False

    def _side(self, hosts: tuple[str, ...]) -> Counters:
        parts = [self.watch.served(h, self._since.get(h)) for h in hosts]
        return combine(c for c in parts if c is not None)

    def report(self, state: CanaryState, reason: str = "", action: str = "") -> CanaryReport:
        elapsed = self.e.clock.now() - self._start
        secs = max(elapsed, 1e-9)
        return CanaryReport(state=state, canary_hosts=self.canary_hosts, baseline_hosts=self.baseline_hosts,
                            canary=self._rates(self._side(self.canary_hosts), secs),
                            baseline=self._rates(self._side(self.baseline_hosts), secs),
                            elapsed_seconds=round(elapsed, 3), soak_seconds=self.seconds, reason=reason,
                            action=action, warmup_seconds=self.warmup, warming_up=self._warming)

    @staticmethod
    def _rates(c: Counters, seconds: float) -> Rates:
        return rates(c, round(seconds, 3))

    async def _mark(self) -> None:
        """A fresh reading of every host starts a stretch (the warm-up, or the judged window)."""
        await self.watch.sample()
        self._start = self.e.clock.now()
        self._since = {h: self.watch.latest.get(h) for h in (*self.canary_hosts, *self.baseline_hosts)}

    async def _serve(self, seconds: float) -> bool:
        """A live CanaryUpdate about once a second for `seconds`; False when a stop was asked."""
        e = self.e
        end = self._start + seconds
        while True:
            if e.cancelled():
                return False
            await e.emit(CanaryUpdate(report=self.report(CanaryState.SOAKING)))
            left = end - e.clock.now()
            if left <= 0:
                return True
            await e.clock.sleep(min(e.opt.traffic_seconds, left))

    async def run(self) -> CanaryReport | None:
        """The warm-up, the window, then the verdict; None when the operator asked to stop."""
        e = self.e
        await self._mark()
        against = f"compared with {', '.join(self.baseline_hosts) or 'no host'}"
        if self.warmup > 0:
            await e.log(None, f"canary: {', '.join(self.canary_hosts)} serve {e.plan.to_tag}, warming up for "
                              f"{self.warmup:g}s (not judged) before a {self.seconds:g}s soak (old container kept "
                              f"running), {against}")
            self._warming = True
            if not await self._serve(self.warmup):
                return None
            self._warming = False
            await self._mark()
        await e.log(None, f"canary: {', '.join(self.canary_hosts)} serve {e.plan.to_tag} for {self.seconds:g}s "
                          f"(old container kept running), {against}")
        if not await self._serve(self.seconds):
            return None
        await self.watch.sample()  # a fresh reading marks its end
        canary, baseline = self._side(self.canary_hosts), self._side(self.baseline_hosts)
        verdict = judge(canary, baseline, self.cfg)
        return self.report(verdict.state, verdict.reason, action_for(verdict.state, self.cfg))
