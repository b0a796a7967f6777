"""lb-drain's evidence rules: from the service's admin counters (per-source health-checker counts,
in_flight, served) and, advisory, the LB's own health view, has the LB stopped sending a host
traffic, or does it send it traffic again? And when will the LB's next checks come (the overlap
of batches is timed by them)? Pure functions of the counters and the LB's settings; no I/O.
"""

from __future__ import annotations

from zdd_tui.rollout.interfaces import HealthChecker, LBSettings, ServiceStats


def recent_checkers(st: ServiceStats, settings: LBSettings) -> list[HealthChecker]:
    """The LB check sources seen within two intervals (older ones are gone or were one-offs)."""
    return [c for c in st.health_checkers if c.last_age_seconds <= 2 * settings.interval]


def out_evidence(st: ServiceStats, lb: bool | None, settings: LBSettings) -> tuple[bool, str]:
    """Has the LB stopped sending this (drained) service traffic? (service/README.md, "counter meanings")"""
    u = settings.unhealthy_threshold
    if st.in_flight > 0:
        return False, f"{st.in_flight} request(s) in flight"
    recent = recent_checkers(st, settings)
    if recent:
        behind = [c for c in recent if c.consecutive_fail < u]
        if not behind:
            return True, "LB health checks failed " + ", ".join(
                f"{c.consecutive_fail}x from {c.source}" for c in recent)
        return False, "LB checks failing " + ", ".join(
            f"{c.consecutive_fail}/{u} from {c.source}" for c in behind)
    if lb is False:
        return True, "no recent LB checks; the LB reports it unhealthy"
    quiet = st.last_request_age_seconds
    need = u * settings.interval + settings.timeout
    if quiet is None or quiet >= need:
        return True, f"no recent LB checks; no public traffic for {need:g}s"
    return False, f"no recent LB checks; last public request {quiet:.1f}s ago"


def in_evidence(st: ServiceStats, lb: bool | None, served_base: int, settings: LBSettings) -> tuple[bool, str]:
    """Does the LB send this service traffic (again)?"""
    hthr = settings.healthy_threshold
    if st.draining:
        return False, "service is draining"
    if st.served > served_base:
        return True, f"receiving traffic ({st.served - served_base} request(s))"
    recent = recent_checkers(st, settings)
    if recent:
        behind = [c for c in recent if c.consecutive_ok < hthr]
        if not behind:
            return True, "LB health checks passed " + ", ".join(
                f"{c.consecutive_ok}x from {c.source}" for c in recent)
        return False, "LB checks passing " + ", ".join(
            f"{c.consecutive_ok}/{hthr} from {c.source}" for c in behind)
    if lb is True:
        return True, "the LB reports it healthy"
    return False, "no LB health checks seen yet"


def next_checks(st: ServiceStats, now: float, settings: LBSettings) -> list[tuple[float, HealthChecker]]:
    """(time of the next check, checker) per recent LB checker source."""
    interval = settings.interval
    return [(now + max(0.0, interval - c.last_age_seconds), c) for c in recent_checkers(st, settings)]


def drain_window(st: ServiceStats, now: float, after: float, settings: LBSettings) -> tuple[float, float] | None:
    """When to drain so that the `unhealthy`-th failing check (the LB takes it out) is the first
    check after `after`: (drain at, that check's time), or None."""
    u, interval = settings.unhealthy_threshold, settings.interval
    nexts = next_checks(st, now, settings)
    if not nexts:
        return None
    lo, hi, out_at = now, None, 0.0
    for t, _ in nexts:
        k = max(0, int((after - t) // interval) + 1) if t <= after else 0
        c_out = t + k * interval  # this source's first check after `after`
        first_fail = c_out - (u - 1) * interval
        # drain between the check before first_fail and first_fail itself
        lo = max(lo, first_fail - interval)
        hi = first_fail if hi is None else min(hi, first_fail)
        out_at = max(out_at, c_out)
    if hi is None or hi - lo < interval / 3:
        return None  # sources disagree too much (several LB nodes): no early drain
    return (lo + hi) / 2, out_at
