"""Fixed traffic for the console's pictures: a local-swap rollout with a canary whose event stream
carries the proxies' readings (TrafficSampled), the switches and the canary's soak (CanaryUpdate),
and a dashboard history of fixed readings. Every number is chosen here, so the graphs are the
same on every run and a test can add the events up itself.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from zdd_tui.events import Event
from zdd_tui.rollout.events import (
    CanaryReport,
    CanaryState,
    CanaryUpdate,
    HealthChanged,
    HostTraffic,
    Outcome,
    OutcomeStatus,
    Phase,
    PhaseChanged,
    Plan,
    Progress,
    RolloutFinished,
    RolloutPlanned,
    SlotSwitched,
    TrafficSampled,
)
from zdd_tui.traffic import Counters, ProxyCounters, Rates

from .swapfake import NEW, OLD, SwapSource, swap_plan

HOSTS = ("app-1", "app-2", "app-3")
SOAK = 10.0
CANARY_SWITCH, SOAK_END = 3.0, 13.0  # app-1 switches at 3 s; its soak ends 10 s later
SWITCHES = {"app-1": CANARY_SWITCH, "app-2": 15.0, "app-3": 16.0}
END = 20.0


def canary_plan(action: str = "deploy", tag: str = NEW) -> Plan:
    return replace(swap_plan(action, tag), canary_hosts=("app-1",), canary_seconds=SOAK,
                   estimated_seconds=24.0)


def host_rates(host: str, t: float, bad: bool) -> Rates:
    """One host's second ending at `t`: ~100 requests, p95 40 ms; the new version on app-1 in
    the `bad` stream answers 5% of them 500 and takes 90 ms."""
    requests = 100 + (int(t) * 7 + len(host) + int(host[-1]) * 3) % 11
    on_new = t > SWITCHES[host]
    errors = requests * 5 // 100 if bad and on_new else 0
    p95 = 0.09 if bad and on_new else 0.04
    return Rates(seconds=1.0, requests=requests, errors=errors, p50=p95 / 2, p95=p95, in_flight=2)


def _side(hosts: tuple[str, ...], t: float, bad: bool) -> Rates:
    """The soak's numbers so far for `hosts` (from the canary's switch to `t`)."""
    secs = list(range(int(CANARY_SWITCH) + 1, int(t) + 1))
    parts = [host_rates(h, float(s), bad) for h in hosts for s in secs]
    req = sum(r.requests for r in parts)
    err = sum(r.errors for r in parts)
    p95 = max((r.p95 or 0.0 for r in parts), default=None) if parts else None
    return Rates(seconds=max(t - CANARY_SWITCH, 0.0), requests=req, errors=err, p50=None, p95=p95)


def canary_report(t: float, bad: bool, state: CanaryState = CanaryState.SOAKING) -> CanaryReport:
    reason = action = ""
    if state is CanaryState.FAILED:
        reason = "5xx share 5.00% vs 0.00% on the old version: more than the 1.00 points allowed"
        action = "app-1 is back on the old version; the rollout halts"
    elif state is CanaryState.PASSED:
        reason = "5xx share 0.00% vs 0.00%, p95 40ms vs 40ms: within the thresholds"
        action = "continuing with the other hosts"
    return CanaryReport(state, ("app-1",), ("app-2", "app-3"), _side(("app-1",), t, bad),
                        _side(("app-2", "app-3"), t, bad), elapsed_seconds=t - CANARY_SWITCH,
                        soak_seconds=SOAK, reason=reason, action=action)


def traffic_stream(plan: Plan, bad: bool = False) -> list[Event]:
    """The rollout second by second: a reading of every proxy each second, app-1's switch, its
    soak (a comparison each second, then the verdict), then app-2 and app-3 (good), or app-1
    back on the old version and a halt (bad). No host loses a request to the rollout itself."""
    events: list[Event] = [RolloutPlanned(plan, at=0.0)]
    for n in HOSTS:
        events.append(PhaseChanged(n, Phase.PENDING, "image pulled; waiting its turn", at=0.5))
    end = SOAK_END if bad else END
    for s in range(1, int(end) + 1):
        t = float(s)
        for host, when in SWITCHES.items():
            if t - 1 < when <= t and not (bad and host != "app-1"):
                events.append(PhaseChanged(host, Phase.SWITCHING, "a -> b", at=when - 0.1))
                events.append(SlotSwitched(host, "b", NEW, OLD, at=when))
                events.append(HealthChanged(host, "proxy", True, at=when))
                events.append(PhaseChanged(host, Phase.DRAINING_OLD, "", at=when))
        events.append(TrafficSampled(tuple(HostTraffic(h, host_rates(h, t, bad)) for h in HOSTS), at=t))
        if CANARY_SWITCH < t <= SOAK_END:
            state = CanaryState.SOAKING
            if t == SOAK_END:
                state = CanaryState.FAILED if bad else CanaryState.PASSED
            events.append(CanaryUpdate(canary_report(t, bad, state), at=t))
        if not bad and t in (SOAK_END + 1, END - 1):
            done = ["app-1"] if t == SOAK_END + 1 else list(HOSTS)
            for n in done:
                events.append(PhaseChanged(n, Phase.DONE, NEW, at=t))
            events.append(Progress(done[-1], 1.0, len(done) / len(HOSTS), at=t))
    if bad:
        events.append(SlotSwitched("app-1", "a", OLD, NEW, at=end + 0.2))
        events.append(PhaseChanged("app-1", Phase.RESTORED, OLD, at=end + 0.5))
        for n in HOSTS[1:]:
            events.append(PhaseChanged(n, Phase.SKIPPED, "", at=end + 0.5))
        outcome = Outcome(OutcomeStatus.HALTED, "the canary judged the new version worse than the old one", NEW,
                          restored=True, fleet=dict.fromkeys(HOSTS, OLD), duration_seconds=end + 0.5,
                          rollout_id=plan.rollout_id, canary=canary_report(SOAK_END, bad, CanaryState.FAILED))
    else:
        outcome = Outcome(OutcomeStatus.SUCCESS, f"{len(HOSTS)} host(s) now run {NEW}", NEW,
                          fleet=dict.fromkeys(HOSTS, NEW), duration_seconds=end, rollout_id=plan.rollout_id,
                          canary=canary_report(SOAK_END, bad, CanaryState.PASSED))
    events.append(RolloutFinished(outcome, at=end + 0.5))
    return events


class TrafficSource(SwapSource):
    """The fixed fleet behind proxies; a deploy plays `traffic_stream` (bad: the canary fails)."""

    def __init__(self, bad: bool = False, pause_after: int | None = None, **kw: Any):
        super().__init__(pause_after=pause_after, **kw)
        self.stream_of = lambda plan: traffic_stream(plan, bad)

    async def plan(self, action: str, tag: str) -> Plan:
        return canary_plan(action, tag)


def events_until(events: list[Event], predicate) -> int:
    """How many events up to and including the first that `predicate` accepts."""
    return next(i + 1 for i, ev in enumerate(events) if predicate(ev))


# -- the dashboard's history ---------------------------------------------------------------------

def dashboard_history(at_end: float = 0.0) -> list[TrafficSampled]:
    """Five minutes of readings ending at `at_end`, one every 5 s: app-1 steady ~40 req/s with
    no 5xx, app-2 busier with a burst of 5xx a minute ago, app-3 without a proxy (no reading)."""
    out = []
    for i in range(60):
        t = at_end - 295.0 + 5 * i
        app1 = Rates(5.0, 200 + (i * 13) % 40, 0, 0.01, 0.03, 1)
        app2 = Rates(5.0, 300 + (i * 29) % 150, 25 if 45 <= i <= 47 else 0, 0.02, 0.05, 3)
        out.append(TrafficSampled((HostTraffic("app-1", app1), HostTraffic("app-2", app2),
                                   HostTraffic("app-3", None)), at=t))
    return out


def fixed_counters(requests: int = 1000) -> ProxyCounters:
    return ProxyCounters(slots={"a": Counters(requests, 0, ((0.1, requests), (float("inf"), requests)), 10.0)},
                         in_flight={"a": 0, "b": 0})


def give_traffic(runtimes: dict[str, Any], readings: dict[str, ProxyCounters | None]) -> None:
    """The fake hosts' runtimes answer `traffic()` with these (None: no proxy reading)."""
    for name, counters in readings.items():
        async def traffic(c: ProxyCounters | None = counters) -> ProxyCounters | None:
            return c

        runtimes[name].traffic = traffic
