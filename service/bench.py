#!/usr/bin/env python3
"""Benchmark the sample service (run on demand; not a test, prints figures, asserts nothing).

    python3 service/bench.py [--duration 10] [--connections 50] [--generator auto|wrk|aiohttp]

- Throughput and latency: the service pinned to one CPU (taskset), the load generator pinned to
  another, for GET / and GET /health. The generator is wrk when installed (apt-get install wrk),
  else an aiohttp client in a separate process (which saturates before the server does, so its
  figures are a lower bound).
- Start-up: time from spawning `python3 -m zdd_service` to the first 200 from /health, polled
  every 2 ms by a direct probe (X-Zdd-Probe), median and worst of --startup-runs.
- Also requests per second of the server's CPU time (/proc/PID/stat): on a shared machine the
  wall-clock figures shrink with other load; this one much less.
Only 127.0.0.1 is used.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def service_env(port: int, admin_port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZDD_")}
    env.update(
        PYTHONPATH=os.pathsep.join(p for p in (str(HERE), env.get("PYTHONPATH", "")) if p),
        ZDD_HOST="127.0.0.1",
        ZDD_PORT=str(port),
        ZDD_ADMIN_PORT=str(admin_port),
        ZDD_VERSION="bench",
    )
    return env


def pinned(cmd: list[str], cpu: int | None) -> list[str]:
    if cpu is None or not shutil.which("taskset"):
        return cmd
    return ["taskset", "-c", str(cpu), *cmd]


def health_ok(port: int) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
    try:
        conn.request("GET", "/health", headers={"X-Zdd-Probe": "bench"})
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


def start_service(cpu: int | None) -> tuple[subprocess.Popen[str], int, float]:
    """Start a service; returns (process, public port, seconds to the first healthy answer)."""
    t0 = time.perf_counter()
    # Port 0: the service binds free ports itself and prints the one it got on its "listening" line.
    proc = subprocess.Popen(
        pinned([sys.executable, "-m", "zdd_service"], cpu),
        env=service_env(0, 0),
        stdout=subprocess.PIPE,
        text=True,
    )
    port = listening_port(proc)
    while not health_ok(port):
        if proc.poll() is not None:
            raise SystemExit(f"service exited with {proc.returncode} during start-up")
        if time.perf_counter() - t0 > 30:
            stop(proc)
            raise SystemExit("service not healthy after 30 s")
        time.sleep(0.002)
    return proc, port, time.perf_counter() - t0


def listening_port(proc: subprocess.Popen[str]) -> int:
    """The public port from the service's "listening" line (it prints a few lifecycle lines only)."""
    assert proc.stdout is not None
    for line in proc.stdout:
        m = re.match(r"zdd-service listening public=\S+:(\d+) ", line)
        if m:
            return int(m.group(1))
    raise SystemExit(f"service exited with {proc.wait()} before listening")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (taskset execs, so the PID is the service's)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stop(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=35)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


# -- load generators ---------------------------------------------------------------------------

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}


def run_wrk(url: str, duration: float, connections: int, cpu: int | None) -> dict[str, float]:
    out = subprocess.run(
        pinned(["wrk", "-t1", f"-c{connections}", f"-d{int(duration)}s", "--latency", url], cpu),
        capture_output=True, text=True, check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    lat = {}
    for pct, value, unit in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s|m)\s*$", out, re.M):
        lat[pct] = float(value) * _UNITS[unit]
    total = int(re.search(r"(\d+) requests in", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sockerr = re.search(r"Socket errors: (.*)", out)
    return {
        "rps": rps, "requests": total, "p50_ms": lat["50"], "p99_ms": lat["99"],
        "non_2xx": int(errors.group(1)) if errors else 0,
        "socket_errors": sockerr.group(1) if sockerr else "none",
    }


async def _aiohttp_load(url: str, duration: float, connections: int) -> dict[str, float]:
    import aiohttp

    latencies: list[float] = []
    bad = 0
    deadline = time.perf_counter() + duration

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal bad
        while time.perf_counter() < deadline:
            t = time.perf_counter()
            async with session.get(url) as resp:
                await resp.read()
                if resp.status >= 400:
                    bad += 1
            latencies.append(time.perf_counter() - t)

    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector) as session:
        started = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(connections)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    q = statistics.quantiles(latencies, n=100)
    return {"rps": len(latencies) / elapsed, "requests": len(latencies), "p50_ms": q[49] * 1e3, "p99_ms": q[98] * 1e3,
            "non_2xx": bad, "socket_errors": "none"}


def run_aiohttp(url: str, duration: float, connections: int, cpu: int | None) -> dict[str, float]:
    # In its own process, so the client's CPU is not the server's.
    out = subprocess.run(
        pinned([sys.executable, __file__, "--load-worker", url, str(duration), str(connections)],
               cpu),
        capture_output=True, text=True, check=True,
    ).stdout
    return json.loads(out)


# -- main --------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=10.0, help="seconds per load run")
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--generator", choices=("auto", "wrk", "aiohttp"), default="auto")
    ap.add_argument("--server-cpu", type=int, default=0)
    ap.add_argument("--client-cpu", type=int, default=1)
    ap.add_argument("--startup-runs", type=int, default=10)
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    ap.add_argument("--load-worker", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.load_worker:
        url, duration, connections = args.load_worker
        print(json.dumps(asyncio.run(_aiohttp_load(url, float(duration), int(connections)))))
        return 0

    generator = args.generator
    if generator == "auto":
        generator = "wrk" if shutil.which("wrk") else "aiohttp"
    if generator == "wrk" and not shutil.which("wrk"):
        print("bench: error: wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return 2
    load = run_wrk if generator == "wrk" else run_aiohttp
    cpus = os.cpu_count() or 1
    server_cpu = args.server_cpu if cpus > args.server_cpu else None
    client_cpu = args.client_cpu if cpus > args.client_cpu and cpus > 1 else None

    import aiohttp

    results: dict[str, object] = {
        "python": sys.version.split()[0],
        "aiohttp": aiohttp.__version__,
        "generator": generator,
        "connections": args.connections,
        "duration_s": args.duration,
        "server_cpu": server_cpu,
        "client_cpu": client_cpu,
    }

    startups = []
    for _ in range(args.startup_runs):
        proc, _, took = start_service(server_cpu)
        startups.append(took * 1e3)
        stop(proc)
    results["startup_ms"] = {"median": statistics.median(startups), "max": max(startups)}

    proc, port, _ = start_service(server_cpu)
    try:
        for path in ("/", "/health"):
            url = f"http://127.0.0.1:{port}{path}"
            load(url, min(2.0, args.duration), args.connections, client_cpu)  # warm-up
            cpu0 = cpu_seconds(proc.pid)
            r = load(url, args.duration, args.connections, client_cpu)
            # Requests per second of the server's own CPU time: what one core sustains when
            # saturated, and unlike wall-clock rps not skewed by other work on a shared machine.
            r["server_cpu_s"] = cpu_seconds(proc.pid) - cpu0
            r["rps_per_cpu_s"] = r["requests"] / r["server_cpu_s"] if r["server_cpu_s"] else 0.0
            results[path] = r
    finally:
        stop(proc)

    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(f"python {results['python']}, aiohttp {results['aiohttp']}, generator {generator}, "
          f"{args.connections} connections, {args.duration:g} s per run, "
          f"server on CPU {server_cpu}, client on CPU {client_cpu}")
    print("| endpoint | requests/s | requests per server CPU-second | p50 ms | p99 ms | non-2xx |"
          " socket errors |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for path in ("/", "/health"):
        r = results[path]
        print(f"| GET {path} | {r['rps']:,.0f} | {r['rps_per_cpu_s']:,.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
              f"{r['non_2xx']} | {r['socket_errors']} |")
    s = results["startup_ms"]
    print(f"start-up to first healthy answer: median {s['median']:.0f} ms, "
          f"max {s['max']:.0f} ms over {len(startups)} runs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
