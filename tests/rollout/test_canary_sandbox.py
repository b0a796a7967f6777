"""The canary gate in the sandbox, through the real CLI, under load through the LB, on a local-swap
fleet of 3 hosts: a good version passes the soak and reaches every host; the sandbox's `errors`
version (5% of `GET /` answered 500) and its `slow` one (250 ms a request) pass every health check
and are caught by the soak: the canary host is back on the old version, still running, the other
hosts never touched, exit 3, the outcome carrying both sides' numbers. The soak's window begins
after a short warm-up, which the live updates show and the numbers leave out.

The load generator counts the errors version's own 500s (marked "injected") apart from failed
requests; no request may fail because of the rollout. The traffic numbers the rollout reports (its
`traffic` and `canary` JSON lines) must agree with the load generator's own count over the same
window: within TOLERANCE of it, plus EDGE_SECONDS of the window's traffic and EDGE requests for
its edges (a reading is stamped when the last host answered: milliseconds after the proxies
counted on a quiet machine, up to a second or two on a busy shared one), and the LB's own health
checks pass through the hosts' proxies too: one request a host every 3 s.
"""

from __future__ import annotations

import asyncio
import json
import sys
from dataclasses import dataclass

import pytest
import yaml

from zdd_tui.config import Config, load_config

from .loadgen import LoadProcess as Load
from .loadgen import LoadResult

pytestmark = pytest.mark.slow

RATE = 250  # requests per second offered through the LB, on a fixed schedule
# What must really have been answered for a run to count: on a busy shared machine the sandbox
# answers fewer than RATE, which is no fault of the product (as in the other sandbox tests).
MIN_RATE = RATE / 4
SOAK = 10  # seconds
WARMUP = 3  # seconds after the switch, shown but not judged
MIN_REQUESTS = 150  # each side: the canary host gets a third of the load, 200+ in a soak at MIN_RATE
TOLERANCE = 0.03
EDGE_SECONDS = 2.0
EDGE = 5
HOSTS = ("app-1", "app-2", "app-3")
DEPLOY_TIMEOUT = 480  # seconds; about a minute on a quiet machine


@pytest.fixture
async def sandbox(tmp_path):
    from zdd_tui.sandbox.supervisor import Sandbox, SandboxOptions

    # Hosts with their proxy from the start: the baseline's numbers come from it. A patient LB:
    # local-swap never takes a host out of it, and on a busy shared machine a stricter one takes
    # hosts out for health checks that merely answered late (the traffic then skews, or stops).
    sb = Sandbox(SandboxOptions(state_dir=tmp_path / "sandbox", hosts=len(HOSTS), strategy="local-swap",
                                lb_interval=3, lb_timeout=5, lb_unhealthy=5, lb_healthy=2,
                                stop_grace_seconds=3, host_shutdown_grace=3))
    await sb.start()
    try:
        yield sb
    finally:
        await sb.stop()


def config_file(sb, tmp_path) -> tuple[Config, tuple[str, ...]]:
    doc = yaml.safe_load(sb.config_path.read_text())
    assert doc["deploy"]["strategy"] == "local-swap"
    # `enabled` left unset: on by itself for a local-swap fleet of 3. `halt` when the soak had too
    # few requests, so that a pass below is a judgement, not a shortfall.
    doc["deploy"].update(start_timeout_seconds=20, margin_seconds=3, canary={
        "warmup_seconds": WARMUP, "soak_seconds": SOAK, "min_requests": MIN_REQUESTS,
        "on_insufficient_traffic": "halt"})
    path = tmp_path / "zdd.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return load_config(path), ("--config", str(path))


def tag_of(sb, behaviour: str, *, not_tag: str | None = None) -> str:
    return next(t["tag"] for t in sb.info["tags"]
                if t["behaviour"] == behaviour and t["tag"].startswith("sha-") and t["tag"] != not_tag)


@dataclass(frozen=True)
class HostView:
    tag: str | None  # what the proxy's active slot serves
    active_slot: str | None
    containers: dict  # name -> (slot, tag, state, started_at)


async def fleet(config: Config) -> dict[str, HostView]:
    """Every host as `zdd-tui status` sees it: the proxy's active slot and the slot containers."""
    from zdd_tui.project import Project

    async with await Project.open(config) as project:
        st = await project.status()
    assert not st.errors, st.errors
    out = {}
    for name, h in st.hosts.items():
        assert h.swap is not None and h.swap.installed, name
        out[name] = HostView(h.tag, h.swap.active_slot,
                             {c.name: (c.slot, c.tag, c.state, c.started_at) for c in h.swap.slots})
    return out


async def deploy(*args: str) -> tuple[int, str, str]:
    """`zdd-tui deploy ARGS --json`; on a busy shared machine it may take minutes, and what it said
    is kept when it takes too long."""
    p = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "zdd_tui", "deploy", *args, "--json", stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    assert p.stdout is not None and p.stderr is not None
    lines: list[str] = []

    async def read() -> None:
        assert p.stdout is not None
        async for line in p.stdout:
            lines.append(line.decode())

    reader = asyncio.ensure_future(read())
    try:
        await asyncio.wait_for(asyncio.shield(reader), DEPLOY_TIMEOUT)
        err = (await p.stderr.read()).decode()
        return await p.wait(), "".join(lines), err
    except TimeoutError:
        p.kill()
        await p.wait()
        raise AssertionError(f"deploy still running after {DEPLOY_TIMEOUT}s:\n" + "".join(lines)[-6000:]) from None
    finally:
        reader.cancel()


async def deploy_under_load(sb, tag: str, cfg: tuple[str, ...]) -> tuple[int, list[dict], str, LoadResult]:
    load = await Load(sb.info["lb_url"] + "/", RATE, max_seconds=DEPLOY_TIMEOUT + 60).start()
    try:
        rc, out, err = await deploy("--tag", tag, "--yes", *cfg)
    finally:
        res = await load.stop()
    events = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    rate = res.answered / res.seconds
    assert rate >= MIN_RATE, res.summary()
    # Connection errors, 502/503/504 and any 5xx not marked "injected": the rollout's failures.
    assert res.failed == 0, (res.summary(), res.first_failures)
    return rc, events, err, res


def of_kind(events: list[dict], kind: str) -> list[dict]:
    return [e for e in events if e["kind"] == kind]


def near(reported: int, counted: int, seconds: float) -> bool:
    return abs(reported - counted) <= TOLERANCE * counted + counted / seconds * EDGE_SECONDS + EDGE


def traffic_agrees(events: list[dict], load: LoadResult) -> int:
    """The rollout's per-second samples, summed over every host, against the load generator's count
    over each sample's window; returns how many samples were compared."""
    reported = counted = samples = 0
    window = 0.0
    for e in of_kind(events, "traffic"):
        rates = [h["rates"] for h in e["hosts"]]
        if len(rates) < len(HOSTS) or any(r is None for r in rates):
            continue  # a host not read this time
        seconds = [r["seconds"] for r in rates]
        if max(seconds) - min(seconds) > 0.05:
            continue  # a host missed the reading before: its window is not the others'
        samples += 1
        reported += sum(r["requests"] for r in rates)
        counted += load.count(e["at"] - max(seconds), e["at"])
        window += max(seconds)
    assert samples >= SOAK / 2, f"only {samples} complete traffic samples"
    print(f"traffic: {samples} samples over {window:.1f}s: the proxies counted {reported}, the load {counted}")
    assert near(reported, counted, window), f"hosts' proxies counted {reported} requests, the load generator {counted}"
    return samples


def verdict(events: list[dict]) -> tuple[dict, float, float]:
    """The canary's verdict and its window (monotonic seconds), checked against the outcome."""
    updates = of_kind(events, "canary")
    assert updates and updates[0]["report"]["state"] == "soaking", [e["report"]["state"] for e in updates]
    # First the warm-up (shown, not judged), then the soak's live comparison, about once a second.
    warming = [u for u in updates if u["report"]["warming_up"]]
    assert updates[:len(warming)] == warming and len(warming) >= WARMUP / 2, len(warming)
    assert all(u["report"]["elapsed_seconds"] <= WARMUP + 0.01 for u in warming)
    soaking = [u for u in updates[len(warming):] if u["report"]["state"] == "soaking"]
    assert len(soaking) >= SOAK / 2, len(soaking)
    assert [u["report"]["state"] for u in updates[len(warming) + len(soaking):]] == [updates[-1]["report"]["state"]]
    report = updates[-1]["report"]
    outcome = of_kind(events, "finished")[-1]["outcome"]
    assert outcome["canary"] == report  # the outcome carries both sides' numbers
    assert report["soak_seconds"] == SOAK and report["elapsed_seconds"] >= SOAK * 0.99, report
    assert report["warmup_seconds"] == WARMUP and not report["warming_up"], report
    # The soak began after the warm-up: its window holds none of the warm-up's traffic.
    assert soaking[0]["at"] - soaking[0]["report"]["elapsed_seconds"] >= warming[-1]["at"] - 0.01
    # Each report is stamped as it is made: its time less its elapsed time is the window's start.
    since = soaking[0]["at"] - soaking[0]["report"]["elapsed_seconds"]
    return report, since, since + report["elapsed_seconds"]


def soak_agrees(report: dict, since: float, until: float, load: LoadResult) -> None:
    """Both sides together served what the load sent over the soak; the canary's 5xx are the
    injected 500s the load generator saw in that window."""
    both = report["canary"]["requests"] + report["baseline"]["requests"]
    print(f"load: {load.summary()}; soak {report['elapsed_seconds']:.1f}s: load {load.count(since, until)} "
          f"answered ({load.count(since, until, injected=True)} injected), canary {report['canary']}, "
          f"baseline {report['baseline']}")
    assert near(both, load.count(since, until), until - since), (both, load.count(since, until), report)
    injected = load.count(since, until, injected=True)
    assert near(report["canary"]["errors"], injected, until - since), (report["canary"], injected)


async def test_a_good_version_passes_the_canary_and_reaches_every_host(sandbox, tmp_path):
    config, cfg = config_file(sandbox, tmp_path)
    v1 = sandbox.info["hosts"][0]["tag"]
    v2 = tag_of(sandbox, "ok", not_tag=v1)
    assert {h.tag for h in (await fleet(config)).values()} == {v1}

    rc, events, err, res = await deploy_under_load(sandbox, v2, cfg)
    assert rc == 0, err
    plan = of_kind(events, "planned")[0]["plan"]
    assert len(plan["canary_hosts"]) == 1 and plan["canary_seconds"] == SOAK
    r, since, until = verdict(events)
    assert r["state"] == "passed", r
    assert r["canary_hosts"] == plan["canary_hosts"] and len(r["baseline_hosts"]) == len(HOSTS) - 1
    assert r["canary"]["requests"] >= MIN_REQUESTS and r["baseline"]["requests"] >= MIN_REQUESTS, r
    assert r["canary"]["errors"] == r["baseline"]["errors"] == 0, r
    assert res.injected == 0, res.summary()
    assert {h: v.tag for h, v in (await fleet(config)).items()} == dict.fromkeys(HOSTS, v2)
    assert res.versions.get(v2, 0) > 0, res.versions  # the new version really served through the LB
    soak_agrees(r, since, until, res)
    traffic_agrees(events, res)


@pytest.mark.parametrize("behaviour", ["errors", "slow"])
async def test_a_healthy_but_bad_version_is_caught_during_the_soak(sandbox, tmp_path, behaviour):
    config, cfg = config_file(sandbox, tmp_path)
    v1 = sandbox.info["hosts"][0]["tag"]
    bad = tag_of(sandbox, behaviour)
    before = await fleet(config)
    assert {h.tag for h in before.values()} == {v1}

    rc, events, err, res = await deploy_under_load(sandbox, bad, cfg)
    assert rc == 3, err  # halted
    plan = of_kind(events, "planned")[0]["plan"]
    (canary,) = plan["canary_hosts"]
    others = [h for h in HOSTS if h != canary]

    # Caught by the soak, not by a health check: the canary served the new version first.
    switched = [(e["host"], e["tag"]) for e in of_kind(events, "switched")]
    assert switched == [(canary, bad)], switched
    r, since, until = verdict(events)
    assert r["state"] == "failed" and r["canary_hosts"] == [canary] and sorted(r["baseline_hosts"]) == others, r
    c, b = r["canary"], r["baseline"]
    assert c["requests"] >= MIN_REQUESTS and b["requests"] >= MIN_REQUESTS, r
    assert b["errors"] == 0, r
    if behaviour == "errors":
        # 5% against none; the limit is one point.
        assert c["error_share"] - b["error_share"] > 0.01, r
        assert res.injected > 0, res.summary()  # counted apart: not failed requests
        assert res.injected >= c["errors"], (res.summary(), c)
    else:
        # Every request takes 250 ms on the canary; the old version answers in a few.
        assert c["p95"] >= 0.2 and c["p95"] > 1.5 * max(b["p95"], 0.05), r
        assert c["errors"] == 0 and res.injected == 0, (r, res.summary())
    outcome = of_kind(events, "finished")[-1]["outcome"]
    assert outcome["status"] == "halted" and outcome["restored"] is True, outcome
    assert outcome["fleet"] == dict.fromkeys(HOSTS, v1), outcome

    after = await fleet(config)
    # The canary host is back on the old container, which never stopped; the new one is gone.
    assert after[canary].tag == v1 and after[canary].active_slot == before[canary].active_slot
    assert after[canary].containers == before[canary].containers, (before[canary], after[canary])
    # The others were never touched: the same containers, started at the same moments.
    for h in others:
        assert after[h] == before[h], h
    soak_agrees(r, since, until, res)
    traffic_agrees(events, res)
