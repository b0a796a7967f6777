"""Rollout benchmark: both strategies of zdd-tui vs the seed's fixed-sleep algorithm.

Run on demand (not part of the test run), from the repository root:

    python -m tests.bench_rollout [--rounds 1] [--hosts 3] [--rate 250] [--lb fast|do]

For each LB setting (`fast`: interval 3 s, timeout 3 s, unhealthy 2, healthy 3; `do`:
DigitalOcean's defaults, 10 s, 5 s, 3, 5) it starts its own sandboxes and, under load through
the LB (counting every failed request), alternates the fleet between two good versions:
- on an `lb-drain` sandbox: zdd-tui at batch size 1, the seed's algorithm (one host at a time:
  pull, drain, sleep (unhealthy+1) x interval, stop, run, sleep (healthy+1) x interval, check
  health), zdd-tui at batch size 2, and at batch size 1 without overlap (the next batch drained
  only after the previous one is back, the strategy the bound describes);
- on a `local-swap` sandbox: zdd-tui at batch size 1 (a deploy), then a rollback to the version
  it just replaced, which every host keeps (stopped): no pull.
Prints wall times, each strategy's floor, the ratios, and failed requests. The lb-drain bound is
per batch (unhealthy + healthy - 1) x interval, which is how long the LB needs on average to
notice a host leave and come back, plus the measured stop and start time. The local-swap floor
is what no strategy can avoid: the sum over hosts of the new container's start-to-healthy plus
the switch, as measured in the same run.
Figures only: nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "rollout"))

from tests.bench_rollout.profile import Profiler
from zdd_tui.config import load_config
from zdd_tui.headless import HeadlessRenderer
from zdd_tui.project import Project
from zdd_tui.project.rollout import image_ref
from zdd_tui.rollout.engine import EngineOptions
from zdd_tui.rollout.events import OutcomeStatus, Phase, PhaseChanged
from zdd_tui.rollout.listeners import Recorder

from loadgen import Load

TRACE = False
PROFILE = False

LB_SETTINGS = {"fast": (3, 3, 2, 3), "do": (10, 5, 3, 5)}  # interval, timeout, unhealthy, healthy
INTERVAL, TIMEOUT, UNHEALTHY, HEALTHY = LB_SETTINGS["fast"]


@dataclasses.dataclass
class Run:
    name: str
    batch: int
    wall: float
    stop_start: float  # mean measured stop + start (until the new container is healthy) per host
    batches: int
    failed: int
    sent: int
    pull: float = 0.0  # measured pull before the first drain (zdd-tui pulls all hosts at once)
    undone: int = 0  # early drains the guard undid (the previous batch came back late)
    failures: str = ""  # what the failed requests met (statuses, errors, the first few)

    lb: str = "fast"
    floor_seconds: float | None = None  # local-swap: the measured physical floor
    per_host: float = 0.0  # wall / hosts changed

    @property
    def bound(self) -> float:
        if self.floor_seconds is not None:
            return self.floor_seconds
        # This run's LB setting: the globals hold whichever setting ran last.
        interval, _timeout, unhealthy, healthy = LB_SETTINGS[self.lb]
        return self.pull + self.batches * ((unhealthy + healthy - 1) * interval + self.stop_start)


def start_sandbox(state: Path, hosts: int, strategy: str) -> tuple[subprocess.Popen, dict]:
    state.mkdir(mode=0o700, exist_ok=True)
    proc = subprocess.Popen(
        [sys.executable, "-m", "zdd_tui", "sandbox", "up", "--json", "--state-dir", str(state), "--hosts", str(hosts),
         "--strategy", strategy,
         "--lb-interval", str(INTERVAL), "--lb-timeout", str(TIMEOUT), "--lb-unhealthy", str(UNHEALTHY),
         "--lb-healthy", str(HEALTHY)], stdout=subprocess.PIPE, stderr=open(state / "sandbox.err", "w"), text=True)
    line = proc.stdout.readline()
    if not line:
        raise SystemExit(f"sandbox up failed: see {state / 'sandbox.err'}")
    return proc, json.loads(line)


def failures(res) -> str:
    """What the failed requests met: an overloaded machine (timeouts everywhere) reads differently
    from a host that refused connections during a switch."""
    return f"statuses {res.statuses}, errors {res.errors}, first at {res.first_failures[:3]}"


async def zdd_rollout(session, tag: str, batch: int, rate: float, lb_url: str, overlap: bool = True) -> Run:
    session.config = dataclasses.replace(session.config, deploy=dataclasses.replace(session.config.deploy,
                                                                                     batch_size=batch))
    plan = await session.plan_deploy(tag)
    rec = Recorder()
    listeners = [rec] + ([HeadlessRenderer(sys.stdout)] if TRACE else [])
    load = await Load(lb_url + "/", rate, max_seconds=600).start()
    t0 = time.monotonic()
    outcome = await session.run(plan, listeners, options=EngineOptions(overlap=overlap))
    wall = time.monotonic() - t0
    res = await load.stop()
    if outcome.status != OutcomeStatus.SUCCESS:
        raise SystemExit(f"zdd-tui rollout failed: {outcome.message}")
    # stop + start per host from the event times: STOPPING -> WAITING_LB_IN (healthy on its own)
    marks: dict[str, dict[Phase, float]] = {}
    for e in rec.of(PhaseChanged):
        marks.setdefault(e.host, {})[e.phase] = e.at
    spans = [m[Phase.WAITING_LB_IN] - m[Phase.STOPPING] for m in marks.values() if Phase.WAITING_LB_IN in m]
    first_drain = min(m[Phase.DRAINING] for m in marks.values() if Phase.DRAINING in m)
    t_start = min(e.at for e in rec.events)
    return Run("zdd-tui" if overlap else "zdd-tui (no overlap)", batch, wall, statistics.mean(spans),
               len(plan.batches), res.failed, res.sent,
               pull=first_drain - t_start,
               undone=sum(1 for e in rec.of(PhaseChanged) if "early drain undone" in e.detail),
               failures=failures(res))


async def swap_rollout(session, tag: str, rate: float, lb_url: str, rollback: bool = False) -> Run:
    """A local-swap deploy (or rollback) at batch size 1; the floor from its own events."""
    # No canary: its soak is a wait the operator chooses, not the swap this measures.
    deploy = session.config.deploy
    session.config = dataclasses.replace(session.config, deploy=dataclasses.replace(
        deploy, batch_size=1, strategy="local-swap", canary=dataclasses.replace(deploy.canary, enabled=False)))
    plan = await (session.plan_rollback(tag) if rollback else session.plan_deploy(tag))
    rec = Recorder()
    listeners = [rec] + ([HeadlessRenderer(sys.stdout)] if TRACE else [])
    prof = await profiler(session) if PROFILE else None
    load = await Load(lb_url + "/", rate, max_seconds=600).start()
    t0 = time.monotonic()
    outcome = await session.run(plan, listeners)
    t_end = time.monotonic()
    wall = t_end - t0
    res = await load.stop()
    if prof is not None:
        prof.report(rec, t0, t_end, sys.stdout)
    if outcome.status != OutcomeStatus.SUCCESS:
        raise SystemExit(f"zdd-tui local-swap {plan.action} failed: {outcome.message}")
    marks: dict[str, dict[Phase, float]] = {}
    for e in rec.of(PhaseChanged):
        marks.setdefault(e.host, {}).setdefault(e.phase, e.at)
    # start-to-healthy: STARTING -> SWITCHING; the switch: SWITCHING -> DRAINING_OLD
    starts = [m[Phase.SWITCHING] - m[Phase.STARTING] for m in marks.values()
              if Phase.STARTING in m and Phase.SWITCHING in m]
    switches = [m[Phase.DRAINING_OLD] - m[Phase.SWITCHING] for m in marks.values()
                if Phase.SWITCHING in m and Phase.DRAINING_OLD in m]
    hosts = max(1, len(starts))
    return Run("local-swap rollback" if rollback else "local-swap", 1, wall,
               statistics.mean(starts) if starts else float("nan"), len(plan.batches), res.failed, res.sent,
               floor_seconds=sum(starts) + sum(switches), per_host=wall / hosts, failures=failures(res))


async def profiler(session) -> Profiler:
    prof = Profiler()
    for name, rt in (await session.host_runtimes()).items():
        prof.wrap(rt, name)
    prof.wrap(session.cloud, "cloud")
    return prof


async def seed_rollout(session, tag: str, rate: float, lb_url: str) -> Run:
    """The seed's per-host job, faithfully: fixed sleeps, one host at a time."""
    runtimes = await session.host_runtimes()
    ref = image_ref(session.config, tag)
    load = await Load(lb_url + "/", rate, max_seconds=600).start()
    t0 = time.monotonic()
    spans = []
    pulls = []
    for name, rt in runtimes.items():
        p0 = time.monotonic()
        await rt.pull(ref)
        pulls.append(time.monotonic() - p0)
        await rt.drain()  # the seed's `curl /shutdown`
        await asyncio.sleep((UNHEALTHY + 1) * INTERVAL)
        s0 = time.monotonic()
        await rt.stop(session.config.deploy.stop_grace_seconds)
        await rt.run(ref)
        while not (await rt.probe_health()).healthy:  # measured only: the seed does not wait here
            if time.monotonic() - s0 > 60:
                break
            await asyncio.sleep(0.1)
        spans.append(time.monotonic() - s0)
        await asyncio.sleep(max(0.0, (HEALTHY + 1) * INTERVAL - (time.monotonic() - s0 - spans[-1])))
        if not (await rt.probe_health()).healthy:  # `curl --fail /health`
            raise SystemExit(f"seed: {name} not healthy")
    wall = time.monotonic() - t0
    res = await load.stop()
    return Run("seed (fixed sleeps)", 1, wall, statistics.mean(spans), len(runtimes), res.failed, res.sent,
               pull=sum(pulls), failures=failures(res))


async def bench_lb(lb: str, a, tmp: Path) -> list[Run]:
    global INTERVAL, TIMEOUT, UNHEALTHY, HEALTHY
    INTERVAL, TIMEOUT, UNHEALTHY, HEALTHY = LB_SETTINGS[lb]
    runs: list[Run] = []
    kinds = a.only or ("zdd1", "seed", "zdd2", "zdd1-seq", "swap")
    for strategy in ("lb-drain", "local-swap"):
        mine = [k for k in kinds if (k == "swap") == (strategy == "local-swap")]
        if not mine:
            continue
        proc, info = start_sandbox(tmp / f"{lb}-{strategy}", a.hosts, strategy)
        try:
            ok = [t["tag"] for t in info["tags"] if t["behaviour"] == "ok" and t["tag"].startswith("sha-")]
            v1 = info["hosts"][0]["tag"]
            v2 = next(t for t in ok if t != v1)
            session = await Project.open(load_config(info["config"]))
            try:
                cur = v1
                for r in range(a.rounds):
                    for kind in mine:
                        nxt = v2 if cur == v1 else v1
                        done: list[Run] = []
                        if kind == "seed":
                            done.append(await seed_rollout(session, nxt, a.rate, info["lb_url"]))
                        elif kind == "swap":
                            done.append(await swap_rollout(session, nxt, a.rate, info["lb_url"]))
                            # Back to the version every host just stopped and kept.
                            done.append(await swap_rollout(session, cur, a.rate, info["lb_url"], rollback=True))
                            nxt = cur
                        else:
                            done.append(await zdd_rollout(session, nxt, 2 if kind == "zdd2" else 1, a.rate,
                                                          info["lb_url"], overlap=kind != "zdd1-seq"))
                        cur = nxt
                        for run in done:
                            run.lb = lb
                            runs.append(run)
                            print(f"[{lb}] round {r + 1} {run.name} batch {run.batch}: {run.wall:.1f}s "
                                  f"({'floor' if run.floor_seconds is not None else 'bound'} {run.bound:.1f}s, "
                                  f"stop+start {run.stop_start:.2f}s"
                                  f"{f', {run.undone} early drain(s) undone' if run.undone else ''}), "
                                  f"{run.failed} failed of {run.sent}"
                                  + (f" ({run.failures})" if run.failed else ""), flush=True)
            finally:
                await session.close()
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
    return runs


async def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m tests.bench_rollout")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--hosts", type=int, default=3)
    ap.add_argument("--rate", type=float, default=250)
    ap.add_argument("--lb", choices=tuple(LB_SETTINGS), action="append",
                    help="LB settings to run (default: both)")
    ap.add_argument("--only", choices=("zdd1", "seed", "zdd2", "zdd1-seq", "swap"), action="append",
                    help="run only these")
    ap.add_argument("--trace", action="store_true", help="print zdd-tui's event lines")
    ap.add_argument("--profile", action="store_true",
                    help="local-swap: print each host's phases with the runtime calls timed in each")
    a = ap.parse_args()
    global TRACE, PROFILE
    TRACE, PROFILE = a.trace, a.profile
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="zdd-bench-") as tmp:
        for lb in a.lb or tuple(LB_SETTINGS):
            runs += await bench_lb(lb, a, Path(tmp))
    report(runs, a)


def report(runs: list[Run], a) -> None:
    def mean(xs):
        return statistics.mean(xs) if xs else float("nan")

    print()
    print(f"{a.hosts} hosts, load {a.rate:.0f} req/s, {a.rounds} round(s); LB settings: " + "; ".join(
        f"{k} = interval {v[0]}s timeout {v[1]}s unhealthy {v[2]} healthy {v[3]}" for k, v in LB_SETTINGS.items()))
    print(f"{'LB':<6}{'strategy':<22}{'batch':>6}{'wall s':>9}{'floor s':>9}{'wall/floor':>12}{'wall/seed':>11}"
          f"{'s/host':>8}{'start s':>9}{'failed':>8}{'requests':>10}")
    for lb in dict.fromkeys(r.lb for r in runs):
        groups: dict[tuple[str, int], list[Run]] = {}
        for r in runs:
            if r.lb == lb:
                groups.setdefault((r.name, r.batch), []).append(r)
        seed = mean([r.wall for r in groups.get(("seed (fixed sleeps)", 1), [])])
        for (name, batch), rs in groups.items():
            wall, bound = mean([r.wall for r in rs]), mean([r.bound for r in rs])
            per_host = mean([r.per_host or r.wall / max(1, r.batches * r.batch) for r in rs])
            print(f"{lb:<6}{name:<22}{batch:>6}{wall:>9.1f}{bound:>9.1f}{wall / bound:>12.2f}{wall / seed:>11.2f}"
                  f"{per_host:>8.1f}{mean([r.stop_start for r in rs]):>9.2f}"
                  f"{sum(r.failed for r in rs):>8}{sum(r.sent for r in rs):>10}")
    print("lb-drain floor (bound) = measured pull + batches x ((unhealthy + healthy - 1) x interval + "
          "measured stop+start)")
    print("local-swap floor = sum over hosts of the measured start-to-healthy + switch; "
          "start s = mean start-to-healthy (local-swap) or stop+start (lb-drain)")


if __name__ == "__main__":
    asyncio.run(main())
