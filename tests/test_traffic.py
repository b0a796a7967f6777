"""Traffic from the proxy's own numbers: Traefik's Prometheus text read per slot, readings turned
into windows (a restarted proxy included), quantiles of its histograms, and the `ss` lines a
droplet's runtime counts in-flight requests from."""

from __future__ import annotations

import math
import threading
from pathlib import Path

import pytest

from zdd_tui import traffic
from zdd_tui.hosts import argv as host_argv
from zdd_tui.hosts import slots as host_slots
from zdd_tui.proxy import traefik
from zdd_tui.sandbox.swap import in_flight_by_port, in_flight_from_proc
from zdd_tui.traffic import INF, Counters, combine, delta, parse_metrics, quantile, rates

# Captured from the real `traefik` 3.7.15 binary with zdd-tui's static configuration: requests on
# slot a (GET 200 fast and 30 ms, 3 GET 500 after 120 ms, 2 GET 503, 4 POST, a 404), a switch,
# then slot b (GET 200, 2 GET 500, a 300 ms one, 3 HEAD), then b's backend stopped: one client
# request answered 502 after the retry middleware's 8 attempts, each counted on the service.
FIXTURE = Path(__file__).parent / "proxy" / "traefik-3.7.15.metrics"
BOUNDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, INF)


def line(name: str, value: str, *, service: str = "slot-a@file", code: str = "200", method: str = "GET",
         le: str | None = None) -> str:
    labels = f'code="{code}",method="{method}",protocol="http",service="{service}"'
    if le is not None:
        labels += f',le="{le}"'
    return f"{name}{{{labels}}} {value}"


def histogram(counts: list[int], **kw) -> list[str]:
    """A series' bucket lines (cumulative counts per BOUNDS) and its sum."""
    le = ["0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf"]
    out = [line("traefik_service_request_duration_seconds_bucket", str(n), le=b, **kw) for b, n in zip(le, counts,
                                                                                                        strict=True)]
    return [*out, line("traefik_service_request_duration_seconds_sum", "0.5", **kw)]


HEAD = ["# TYPE traefik_service_request_duration_seconds histogram"]
REQ_HEAD = ["# TYPE traefik_service_requests_total counter"]


@pytest.fixture(autouse=True)
def fresh_series():
    """Each test parses from nothing known (the parser's series memory is process-wide)."""
    traffic._series.clear()
    yield
    traffic._series.clear()


def test_the_captured_traefik_exposition_per_slot():
    text = FIXTURE.read_text()
    for _ in range(2):  # the second time from the series already parsed
        got = parse_metrics(text)
        assert set(got) == {"a", "b"}
        a, b = got["a"], got["b"]
        # a: 45 GET 200 + 4 POST 200 + 1 GET 404 + 3 GET 500 + 2 GET 503; errors: the 500s and 503s.
        assert (a.requests, a.errors) == (55, 5)
        assert dict(a.buckets) == {0.005: 47, 0.01: 47, 0.025: 47, 0.05: 52, 0.1: 52, 0.25: 55, 0.5: 55, 1.0: 55,
                                   2.5: 55, 5.0: 55, 10.0: 55, INF: 55}
        assert [le for le, _ in a.buckets] == list(BOUNDS)  # ascending, +Inf last
        assert a.duration_sum == pytest.approx(0.19029349099999998 + 0.004531625 + 0.000539372
                                               + 0.36672143900000004 + 0.002149925)
        # b: 26 GET 200 + 3 HEAD 200 + 2 GET 500 + 8 GET 502 (attempts).
        assert (b.requests, b.errors) == (39, 10)
        assert dict(b.buckets)[0.25] == 38 and dict(b.buckets)[0.5] == 39 and b.buckets[-1] == (INF, 39)
    # What the console shows for slot a: the 120 ms requests put p95 in (0.1, 0.25].
    r = rates(got["a"], 10.0, in_flight=2)
    assert (r.requests, r.errors, r.rps, r.in_flight) == (55, 5, 5.5, 2)
    assert r.p50 is not None and r.p50 < 0.005 and r.p95 is not None and 0.1 < r.p95 <= 0.25


def test_other_families_services_and_codes_are_not_counted():
    text = "\n".join([
        *REQ_HEAD,
        line("traefik_service_requests_total", "7"),
        line("traefik_service_requests_total", "3", code="404"),
        line("traefik_service_requests_total", "2", code="500"),
        line("traefik_service_requests_total", "5", code="599"),
        line("traefik_service_requests_total", "100", service="api@internal"),
        line("traefik_service_requests_total", "100", service="slot-a@docker"),
        line("traefik_service_requests_total", "100", service="other-slot-a@file"),
        line("traefik_service_requests_bytes_total", "100"),
        line("traefik_service_request_duration_seconds_count", "100"),
        line("traefik_router_requests_total", "100"),
        'traefik_entrypoint_requests_total{code="500",entrypoint="web",method="GET",protocol="http"} 100',
        "go_goroutines 42",
    ]) + "\n"
    got = parse_metrics(text)
    assert got == {"a": Counters(requests=17, errors=7, buckets=(), duration_sum=0.0)}
    assert parse_metrics(text) == got


def test_a_slot_appears_with_its_first_request_and_an_empty_text_has_none():
    assert parse_metrics("") == {}
    assert parse_metrics("# HELP go_goroutines Number of goroutines.\n# TYPE go_goroutines gauge\n"
                         "go_goroutines 42\n") == {}
    only_b = parse_metrics("\n".join([*REQ_HEAD, line("traefik_service_requests_total", "1", service="slot-b@file"),
                                      *HEAD, *histogram([1] * 12, service="slot-b@file")]))
    assert set(only_b) == {"b"} and only_b["b"].buckets[-1] == (INF, 1)


def test_large_counts_printed_as_floats_are_whole_numbers():
    # Go's exposition prints 1234567 as 1.234567e+06.
    text = "\n".join([*REQ_HEAD, line("traefik_service_requests_total", "1.234567e+06"),
                      line("traefik_service_requests_total", "2e+06", method="POST", code="502")])
    got = parse_metrics(text)["a"]
    assert (got.requests, got.errors) == (3234567, 2000000)
    assert isinstance(got.requests, int)


def test_values_change_from_one_reading_to_the_next():
    first = "\n".join([*REQ_HEAD, line("traefik_service_requests_total", "10"), *HEAD, *histogram([10] * 12)])
    later = "\n".join([*REQ_HEAD, line("traefik_service_requests_total", "25"), *HEAD,
                       *histogram([10, 10, 10, 20, 20, 25, 25, 25, 25, 25, 25, 25])])
    assert parse_metrics(first)["a"].requests == 10
    got = parse_metrics(later)["a"]
    assert got.requests == 25 and dict(got.buckets)[0.025] == 10 and dict(got.buckets)[0.05] == 20


def test_a_text_that_is_not_an_exposition_raises_value_error():
    with pytest.raises(ValueError, match="not a Prometheus"):
        parse_metrics("<html><body>404 page not found</body></html>\n")
    with pytest.raises(ValueError, match="not a Prometheus"):
        parse_metrics('  {"error": "not found"}')


@pytest.mark.parametrize("bad", [
    line("traefik_service_requests_total", "5").replace("}", ""),  # no closing brace
    line("traefik_service_requests_total", "five"),
    line("traefik_service_requests_total", "NaN"),
    line("traefik_service_requests_total", "-3"),
    line("traefik_service_requests_total", "+Inf"),
    line("traefik_service_requests_total", "1_000"),
    line("traefik_service_requests_total", "1 2 3"),
    line("traefik_service_requests_total", "1").replace('code="200"', 'code="200'),  # open quote
    line("traefik_service_request_duration_seconds_bucket", "3"),  # no le
    line("traefik_service_request_duration_seconds_bucket", "3", le="soon"),
    line("traefik_service_request_duration_seconds_bucket", "3", le="NaN"),
    "\n".join(histogram([1] * 12)[:11]),  # no +Inf bucket
    "\n".join(histogram([5, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4])),  # not cumulative
    "\n".join([*HEAD, *histogram([1] * 12)[:-1], line("traefik_service_request_duration_seconds_sum", "inf")]),
])
def test_a_malformed_exposition_raises_value_error(bad):
    with pytest.raises(ValueError):
        parse_metrics("\n".join([*REQ_HEAD, bad]) + "\n")


def test_a_malformed_value_of_a_series_seen_before_raises_too():
    good = line("traefik_service_requests_total", "5")
    assert parse_metrics(good)["a"].requests == 5
    for bad in ("five", "NaN", "-1", "1_0", ""):
        with pytest.raises(ValueError):
            parse_metrics(good[: good.rindex(" ")] + " " + bad)


def _bounded(fn, seconds: float = 60.0):
    """Run fn in a thread; fail when it has not returned (or raised) within `seconds`."""
    out: list = []

    def run() -> None:
        try:
            out.append(fn())
        except ValueError as exc:
            out.append(exc)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), "parse_metrics did not return"
    return out[0]


def test_a_huge_or_hostile_body_is_refused_without_hanging():
    # Bigger than anything read: refused before any work.
    huge = FIXTURE.read_text() * 40
    assert isinstance(_bounded(lambda: parse_metrics(huge)), ValueError)
    # One very long line of escaped quotes (the parser's work on it grows with the square of its
    # length): refused by its length.
    hostile = 'traefik_service_requests_total{service="slot-a@file",code="' + '\\"' * 200_000 + '"} 1\n'
    assert isinstance(_bounded(lambda: parse_metrics(hostile)), ValueError)
    # As many distinct series as fit: read, and the memory of series stays bounded.
    many = "".join(line("traefik_service_requests_total", "1", method=f"M{i}") + "\n" for i in range(9000))
    got = _bounded(lambda: parse_metrics(many))
    assert got["a"].requests == 9000
    assert len(traffic._series) <= traffic.MAX_SERIES


# --- windows, sums, quantiles ------------------------------------------------------------------

def c(requests: int, errors: int, counts: tuple[int, ...], total: float = 1.0) -> Counters:
    return Counters(requests, errors, tuple(zip((0.1, 0.5, INF), counts, strict=True)), total)


def test_delta_over_a_window():
    d = delta(c(30, 3, (10, 25, 30), 4.0), c(10, 1, (5, 8, 10), 1.5))
    assert d == Counters(20, 2, ((0.1, 5), (0.5, 17), (INF, 20)), 2.5)
    assert delta(c(10, 1, (5, 8, 10)), c(10, 1, (5, 8, 10))) == Counters(0, 0, ((0.1, 0), (0.5, 0), (INF, 0)), 0.0)
    assert delta(c(10, 1, (5, 8, 10)), None) == c(10, 1, (5, 8, 10))


def test_delta_after_a_proxy_restart_is_the_new_reading():
    after = c(4, 0, (2, 4, 4), 0.3)
    assert delta(after, c(100, 5, (50, 90, 100), 9.0)) == after  # fewer requests
    assert delta(c(104, 0, (2, 4, 104)), c(100, 5, (50, 90, 100))) == c(104, 0, (2, 4, 104))  # fewer errors
    # More requests and errors than before already, but fewer in a bucket: restarted as well.
    busy = c(150, 6, (30, 140, 150), 9.5)
    assert delta(busy, c(100, 5, (50, 90, 100), 9.0)) == busy


def test_delta_of_a_slot_that_had_no_histogram_yet():
    assert delta(c(5, 0, (1, 2, 5)), Counters()) == c(5, 0, (1, 2, 5))


def test_combine_adds_slots_and_hosts_bound_by_bound():
    assert combine([]) == Counters()
    got = combine([c(10, 1, (5, 8, 10), 1.0), c(20, 2, (1, 15, 20), 2.0), Counters()])
    assert got == Counters(30, 3, ((0.1, 6), (0.5, 23), (INF, 30)), 3.0)


OLD_BOUNDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)  # proxies installed before
NEW_BOUNDS = traefik.BUCKETS


def observed(latencies: list[float], bounds: tuple[float, ...]) -> Counters:
    """What a proxy with these buckets counts for these request durations."""
    return Counters(len(latencies), 0, tuple((le, sum(1 for x in latencies if x <= le)) for le in (*bounds, INF)),
                    sum(latencies))


def test_the_buckets_keep_every_earlier_bound_and_add_finer_ones_around_web_latencies():
    assert set(OLD_BOUNDS) < set(NEW_BOUNDS) and list(NEW_BOUNDS) == sorted(NEW_BOUNDS)
    assert {0.075, 0.15, 0.2, 0.3} <= set(NEW_BOUNDS)


def test_combine_mixes_proxies_with_old_and_new_buckets_on_their_common_bounds():
    # Known distribution: durations uniform over (0, 0.5] s on every host, so the p95 is 0.475 s and
    # linear interpolation inside any bucket of it is exact.
    uniform = [(i + 1) * 0.5 / 1000 for i in range(1000)]
    old_host, new_host = observed(uniform, OLD_BOUNDS), observed(uniform, NEW_BOUNDS)
    for parts in ([old_host, new_host], [new_host, old_host, old_host], [old_host, Counters(), new_host]):
        got = combine(parts)
        n = sum(p.requests for p in parts)
        assert [le for le, _ in got.buckets] == [*OLD_BOUNDS, INF]  # the bounds all of them have
        assert got.buckets == observed(uniform * (n // 1000), OLD_BOUNDS).buckets  # exact there
        assert quantile(0.95, got.buckets) == pytest.approx(0.475)
    # Hosts on the new buckets alone keep them all: the finer p95 of a narrow distribution.
    narrow = [0.11] * 100
    assert quantile(0.95, combine([observed(narrow, NEW_BOUNDS)] * 2).buckets) == pytest.approx(0.1475)
    assert quantile(0.95, observed(narrow, OLD_BOUNDS).buckets) == pytest.approx(0.2425)


def test_delta_across_a_proxy_restart_with_other_buckets_is_the_new_reading():
    before = observed([0.06] * 100, OLD_BOUNDS)
    # Restarted with the new buckets and already busier than before: every shared bound higher.
    after = observed([0.06] * 150 + [0.2] * 50, NEW_BOUNDS)
    assert all(n >= dict(before.buckets)[le] for le, n in after.buckets if le in dict(before.buckets))
    assert delta(after, before) == after
    assert delta(observed([0.06] * 150, NEW_BOUNDS), observed([0.06] * 100, NEW_BOUNDS)).requests == 50


def test_quantiles_of_a_histogram():
    assert quantile(0.95, ()) is None
    assert quantile(0.5, ((0.1, 0), (INF, 0))) is None
    b = ((0.1, 50), (0.5, 90), (INF, 100))
    assert quantile(0.5, b) == pytest.approx(0.1)
    assert quantile(0.7, b) == pytest.approx(0.1 + 0.4 * 20 / 40)
    # In the +Inf bucket: the highest finite bound (as Prometheus answers).
    assert quantile(0.95, b) == 0.5
    assert quantile(0.99, ((0.1, 0), (0.5, 0), (INF, 10))) == 0.5
    assert quantile(0.5, ((INF, 10),)) == 0.0
    r = rates(Counters(), 1.0)
    assert (r.p50, r.p95, r.error_share, r.rps) == (None, None, None, 0.0)
    assert not math.isnan(rates(c(10, 1, (5, 8, 10)), 0.0).rps)


# --- in flight -------------------------------------------------------------------------------

def test_one_ss_command_counts_both_slots():
    assert host_argv.sockets_established_to([8081, 8082]) == [
        "ss", "-Htn", "state", "established", "( dst 127.0.0.1 and ( dport = :8081 or dport = :8082 ) )"]
    with pytest.raises(ValueError):
        host_argv.sockets_established_to([8081], "127.0.0.1 or 1")
    with pytest.raises(ValueError):
        host_argv.sockets_established_to([])
    out = ("0      0      127.0.0.1:54776 127.0.0.1:8081\n"
           "0      0      127.0.0.1:54778 127.0.0.1:8082\n"
           "\n"
           "0      0      127.0.0.1:54780 127.0.0.1:8081\n"
           "ESTAB  0      0      127.0.0.1:54790 127.0.0.1:8082\n"  # an ss that prints the state too
           "0      0      [::1]:54792 [::1]:8081\n")
    assert host_slots.count_by_port(out) == {8081: 3, 8082: 2}
    assert host_slots.count_by_port("") == {}
    assert host_slots.count_by_port("garbage without a port\n") == {}


def test_the_sandbox_counts_both_slots_in_one_pass():
    addr = "127.1.2.3"
    peer = "0302017F"  # 127.1.2.3, little-endian
    rows = [f"   {i}: 0302017F:{40000 + i:04X} {peer}:{port:04X} {state} 00000000:00000000 00:00000000 00000000"
            for i, (port, state) in enumerate([(8081, "01"), (8081, "01"), (8082, "01"), (8081, "06"),
                                               (9000, "01")])]
    table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt\n" + "\n".join(rows) + "\n"
    assert in_flight_by_port(table, addr, [8081, 8082]) == {8081: 2, 8082: 1}
    assert in_flight_by_port(table, addr, [8081]) == {8081: in_flight_from_proc(table, addr, 8081)}
    assert in_flight_by_port(table, "127.9.9.9", [8081, 8082]) == {8081: 0, 8082: 0}
