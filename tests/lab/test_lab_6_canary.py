"""The canary gate in the lab: `zdd-tui deploy --json` on a local-swap fleet of 3 real hosts (the
proxy's own numbers, read over SSH), under >= 200 req/s through the LB, the canary on with a short
soak:

- a good version passes the canary and reaches every host: 0 failed;
- a version that answers 5% of `GET /` with 500 (ZDD_ERROR_RATE, marked "injected") and one that
  takes 1000 ms a request (ZDD_LATENCY_MS) pass every health check and are caught by the soak:
  exit 3, the canary host back on the old version (the proxy's active slot, the version it
  serves, the old container never stopped), the other hosts never touched (the same containers,
  started at the same moments), the JSON outcome carrying both sides' numbers; the load
  generator counts the injected 500s apart, and no request fails because of the rollout;
- the traffic numbers the rollout reports agree with the load generator's own count over the same
  window: the per-second samples of every host (`traffic` lines) and both sides of the soak
  (`canary` lines), each within TOLERANCE of the count plus EDGE requests for the window's edges
  (a host's reading and the moment its window ends are an SSH round trip apart, and the LB's
  health checks pass through the hosts' proxies too: one a host every 3 s).

The tests run in order and share one module-scoped setup; a failed step skips the rest (saying so).
"""

from __future__ import annotations

import json
import time

import pytest

from e2ekit import LB_INTERVAL, START_TIMEOUT, Swap, close_phase, local_swap, needs_swap_runtime
from labkit import report
from loadgen import INJECTED

SOAK = 12  # seconds
WARMUP = 3  # seconds served before the judged soak (shown, not judged)
# Each side in a soak: the canary host gets a third of the load (~80 req/s, ~1000 in the soak),
# so a pass or a fail is a judgement, not a shortfall (and a shortfall halts: see CANARY).
MIN_REQUESTS = 300
# A floor of 300 ms under the p95 the canary is compared with: on a busy 2-core machine a good
# version's canary host measured a p95 of 139 and 351 ms against the other hosts' 79 and 95 ms;
# the slow version's 1000 ms a request stay far above the 450 ms this allows.
CANARY = {"enabled": True, "warmup_seconds": WARMUP, "soak_seconds": SOAK, "min_requests": MIN_REQUESTS,
          "on_insufficient_traffic": "halt", "latency_floor_ms": 300}
# Requests in flight at once: at 250 req/s a busy shared machine answers in up to 1-2 s, and a
# smaller pool would lower the rate offered instead of measuring the rollout under it.
CONCURRENCY = 256
TOLERANCE = 0.03
EDGE = 50

pytestmark = [needs_swap_runtime, pytest.mark.steps]


@pytest.fixture(scope="module")
def swap(lab):
    # One host a batch: the canary is one host, compared with the two others.
    with local_swap(lab, "canary", Swap, batch_size=1, start_timeout=START_TIMEOUT, canary=CANARY) as e:
        yield e


def deploy(e: Swap, tag: str, *, expect: int, label: str) -> list[dict]:
    """`zdd-tui deploy --json`; its JSON lines."""
    cp = e.zdd("deploy", "--tag", tag, "--yes", "--json", expect=expect, label=label)
    return [json.loads(line) for line in cp.stdout.splitlines() if line.startswith("{")]


def of_kind(events: list[dict], kind: str) -> list[dict]:
    return [x for x in events if x["kind"] == kind]


def near(reported: int, counted: int) -> bool:
    return abs(reported - counted) <= TOLERANCE * counted + EDGE


def fleet(e: Swap) -> dict[str, dict]:
    """Every host: the proxy's active slot, the version it serves, its slot containers
    (name -> tag, state, id, start time)."""
    return {h.name: {"slot": e.active_slot(h), "version": e.served(h)["version"],
                     "containers": {c["name"]: (c["tag"], c["state"], c["id"], c["started"]) for c in e.slots(h)}}
            for h in e.lab.hosts}


def running(host: dict) -> dict:
    return {name: c for name, c in host["containers"].items() if c[1] == "running"}


def verdict(events: list[dict]) -> tuple[dict, float, float]:
    """The canary's verdict and its window (monotonic seconds), checked against the outcome."""
    updates = of_kind(events, "canary")
    assert updates and updates[0]["report"]["state"] == "soaking", [u["report"]["state"] for u in updates]
    # First the warm-up (shown, not judged), then the soak's live comparison, about once a second.
    warming = [u for u in updates if u["report"]["warming_up"]]
    assert warming and updates[:len(warming)] == warming, [u["report"]["warming_up"] for u in updates]
    soaking = [u for u in updates[len(warming):] if u["report"]["state"] == "soaking"]
    assert len(soaking) >= SOAK / 2, len(soaking)
    assert [u["report"]["state"] for u in updates[len(warming) + len(soaking):]] == [updates[-1]["report"]["state"]]
    r = updates[-1]["report"]
    outcome = of_kind(events, "finished")[-1]["outcome"]
    assert outcome["canary"] == r  # the outcome carries both sides' numbers
    assert r["soak_seconds"] == SOAK and r["elapsed_seconds"] >= SOAK * 0.99, r
    assert r["warmup_seconds"] == WARMUP and not r["warming_up"], r
    # The judged window began after the warm-up.
    assert soaking[0]["at"] - soaking[0]["report"]["elapsed_seconds"] >= warming[-1]["at"] - 0.01
    # Each report is stamped as it is made: its time less its elapsed time is the window's start.
    since = soaking[0]["at"] - soaking[0]["report"]["elapsed_seconds"]
    return r, since, since + r["elapsed_seconds"]


def soak_agrees(e: Swap, r: dict, since: float, until: float, old: str, new: str) -> None:
    """Each side of the soak against the load generator's answers from its version over the
    window (the canary's: the new version's, its injected 500s included); the canary's 5xx are
    the injected 500s."""
    load = e.load
    assert load is not None
    canary = load.count(since, until, new) + load.count(since, until, INJECTED)
    baseline = load.count(since, until, old)
    injected = load.count(since, until, INJECTED)
    c, b = r["canary"], r["baseline"]
    report(f"soak {r['elapsed_seconds']:.1f} s ({r['state']}): canary {c['requests']} requests "
           f"({c['errors']} 5xx, p95 {c['p95']}), load saw {canary} from {new} ({injected} injected); "
           f"baseline {b['requests']} ({b['errors']} 5xx, p95 {b['p95']}), load saw {baseline} from {old}; "
           f"differences {c['requests'] - canary:+d} / {b['requests'] - baseline:+d}")
    assert near(c["requests"], canary), (c, canary)
    assert near(b["requests"], baseline), (b, baseline)
    assert abs(c["errors"] - injected) <= 0.1 * injected + 3, (c, injected)


def traffic_agrees(e: Swap, events: list[dict]) -> None:
    """The rollout's per-second samples, summed over every host, against the load generator's
    count over each sample's window."""
    load = e.load
    assert load is not None
    reported = counted = samples = 0
    for x in of_kind(events, "traffic"):
        rates = [h["rates"] for h in x["hosts"]]
        if len(rates) < len(e.lab.hosts) or any(r is None for r in rates):
            continue  # a host not read this time
        seconds = [r["seconds"] for r in rates]
        if max(seconds) - min(seconds) > 0.05:
            continue  # a host missed the reading before: its window is not the others'
        samples += 1
        reported += sum(r["requests"] for r in rates)
        counted += load.count(x["at"] - max(seconds), x["at"])
    report(f"traffic samples: {samples} complete, the proxies counted {reported} requests, the load "
           f"generator {counted} ({(reported - counted) / max(counted, 1):+.1%})")
    assert samples >= SOAK / 2, f"only {samples} complete traffic samples"
    assert near(reported, counted), (reported, counted)


# ------------------------------------------------------------------------------------------


def test_01_setup_and_first_deploy_has_no_canary(swap):
    e = swap
    e.login_and_setup()
    v1 = e.build("v1", "v1")
    events = deploy(e, v1, expect=0, label="deploy v1 (first)")
    plan = of_kind(events, "planned")[0]["plan"]
    assert plan["canary_hosts"] == [], plan  # nothing to go back to yet
    assert {h["version"] for h in fleet(e).values()} == {v1}
    e.start_load("steady on v1", concurrency=CONCURRENCY)
    time.sleep(3 * LB_INTERVAL)
    # The LB spreads over the 3 hosts; the rate is held to >= 200 req/s in the deploys' phases.
    ph = e.load.phase("build v2")
    report("load " + ph.summary())
    assert ph.failed == 0 and ph.injected == 0, ph.failures
    assert set(ph.versions) == {v1} and len(ph.ids) == 3, (ph.versions, ph.ids)


def test_02_a_good_version_passes_the_canary_and_reaches_every_host(swap):
    e = swap
    e.change_service()
    v1, v2 = e.tags["v1"], e.build("v2", "v2")
    close_phase(e, "deploy v2")
    events = deploy(e, v2, expect=0, label="deploy v2 (canary passes)")
    ph = close_phase(e, "build errors")
    plan = of_kind(events, "planned")[0]["plan"]
    assert len(plan["canary_hosts"]) == 1 and plan["canary_seconds"] == SOAK, plan
    r, since, until = verdict(events)
    assert r["state"] == "passed", r
    assert r["canary_hosts"] == plan["canary_hosts"] and len(r["baseline_hosts"]) == 2, r
    assert r["canary"]["requests"] >= MIN_REQUESTS and r["baseline"]["requests"] >= MIN_REQUESTS, r
    assert r["canary"]["errors"] == r["baseline"]["errors"] == 0, r
    assert ph.versions.get(v2, 0) > 0 and ph.versions.get(v1, 0) > 0, ph.versions
    assert of_kind(events, "finished")[-1]["outcome"]["fleet"] == {h.name: v2 for h in e.lab.hosts}
    for name, h in fleet(e).items():
        assert h["slot"] == "b" and h["version"] == v2, (name, h)
    soak_agrees(e, r, since, until, v1, v2)
    traffic_agrees(e, events)


@pytest.mark.parametrize(("behaviour", "env"), [("errors", "ZDD_ERROR_RATE=0.05"), ("slow", "ZDD_LATENCY_MS=1000")])
def test_03_a_healthy_but_bad_version_is_caught_during_the_soak(swap, behaviour, env):
    e = swap
    df = e.project / "service" / "Dockerfile"
    original = df.read_text()
    df.write_text(original + f"\n# lab: healthy but bad ({behaviour})\nENV {env}\n")
    try:
        bad = e.build(behaviour, f"{behaviour}: healthy but bad")
    finally:
        df.write_text(original)
    v2 = e.tags["v2"]
    before = fleet(e)
    close_phase(e, f"deploy {behaviour}")
    events = deploy(e, bad, expect=3, label=f"deploy {behaviour} (caught)")
    ph = close_phase(e, f"after {behaviour}", injected_ok=behaviour == "errors")

    plan = of_kind(events, "planned")[0]["plan"]
    (canary,) = plan["canary_hosts"]
    others = sorted(h.name for h in e.lab.hosts if h.name != canary)
    # Caught by the soak, not by a health check: the canary served the new version first.
    switched = [(x["host"], x["tag"]) for x in of_kind(events, "switched")]
    assert switched[0] == (canary, bad) and {h for h, _ in switched} == {canary}, switched
    assert ph.versions.get(bad, 0) > 0 or ph.injected > 0, ph.versions
    r, since, until = verdict(events)
    assert r["state"] == "failed" and r["canary_hosts"] == [canary] and sorted(r["baseline_hosts"]) == others, r
    c, b = r["canary"], r["baseline"]
    assert c["requests"] >= MIN_REQUESTS and b["requests"] >= MIN_REQUESTS, r
    assert b["errors"] == 0, r
    if behaviour == "errors":
        assert c["error_share"] - b["error_share"] > 0.01, r  # 5% against none; the limit is one point
        assert ph.injected > 0 and ph.injected >= c["errors"] * 0.9, (ph.injected, c)
    else:
        assert c["p95"] >= 0.5 and c["p95"] > 1.5 * max(b["p95"], 0.3), r
        assert c["errors"] == 0 and ph.injected == 0, (r, ph.injected)
    outcome = of_kind(events, "finished")[-1]["outcome"]
    assert outcome["status"] == "halted" and outcome["restored"] is True, outcome
    assert outcome["fleet"] == {h.name: v2 for h in e.lab.hosts}, outcome

    after = fleet(e)
    # The canary host is back on the old container, which never stopped (the same id, started at
    # the same moment); the new one is gone (it took the slot of the version before, kept stopped).
    assert after[canary]["slot"] == before[canary]["slot"] and after[canary]["version"] == v2, after[canary]
    assert running(after[canary]) == running(before[canary]), (before[canary], after[canary])
    assert bad not in {tag for tag, *_ in after[canary]["containers"].values()}, after[canary]
    # The others were never touched: the same containers, started at the same moments.
    for name in others:
        assert after[name] == before[name], name
    report(f"{behaviour}: caught on {canary}: {r['reason']}; load {ph.summary()}")
    soak_agrees(e, r, since, until, v2, bad)
    traffic_agrees(e, events)


def test_04_end(swap):
    e = swap
    assert e.load is not None
    ph = e.load.phase("end")
    e.load.stop()
    report("load " + ph.summary())
    assert ph.failed == 0 and ph.injected == 0, ph.failures
