"""Console benchmarks: prints figures, asserts nothing (run: python tests/ui/bench_console.py).

1. Cold start: a new `zdd-tui --config <sandbox project>` process in a real pseudo-terminal,
   from spawn to the first frame, and to the first dashboard painted with fleet data
   ("Droplets (N)" in the terminal output). The sandbox (3 hosts) is already running.
2. Resident memory (VmRSS) of that console once the dashboard is filled, and after 10 s of
   live polling.
3. Key press to repaint with 200 hosts streaming progress: the console app in a pty, its
   rollout view fed 200 hosts' events (~2,000 events/s, Progress/Phase/Health/Log, a fixed
   pseudo-random order); "?" is written to the terminal and the time until the help screen's
   text arrives on the pty is measured (then Esc closes it); p50/p99 over the presses.
   The event stream is synthetic (the engine is not run against 200 live host processes, which
   would need 200 service processes); the screen, its widgets and the terminal are real.

Options: --runs N (cold starts, default 5), --presses N (default 100), --hosts N (default 200),
--rate N (events a second in the stream, default 2000; 0 measures the keys alone), --skip-cold.
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import os
import pty
import re
import select
import signal
import statistics
import struct
import sys
import termios
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
ANSI = re.compile(rb"\x1b\[[0-9;?<>=]*[A-Za-z~]|\x1b\][^\x07\x1b]*(\x07|\x1b\\)|\x1b[=>PX^_].*?")
COLS, ROWS = 140, 44


def _die_with_parent() -> None:
    """Linux: the child is killed if the benchmark dies first (else a streaming child, which
    handles its own signals, can outlive an interrupted run and load the machine)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class PtyProc:
    """A child in a pseudo-terminal of COLS x ROWS; `expect` reads until a pattern shows."""

    def __init__(self, argv: list[str], env: dict[str, str]):
        self.t0 = time.perf_counter()
        self.pid, self.fd = pty.fork()
        if self.pid == 0:
            _die_with_parent()
            os.execvpe(argv[0], argv, env)
        fcntl.ioctl(self.fd, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLS, 0, 0))
        # A bytearray: appending to bytes copies all of it each time, and the console writes
        # ~100 KB/s while streaming; after a minute that copying was the reader's own latency.
        self.buf = bytearray()

    def read_some(self, timeout: float) -> bytes:
        r, _, _ = select.select([self.fd], [], [], timeout)
        if not r:
            return b""
        try:
            data = os.read(self.fd, 1 << 16)
        except OSError:
            return b""
        self.buf += data
        return data

    def expect(self, pattern: bytes, timeout: float = 30.0, since: int = 0) -> float:
        """Seconds since spawn when `pattern` (in escape-stripped output after offset `since`) shows."""
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            text = ANSI.sub(b"", bytes(self.buf[since:]))
            if (pattern.search(text) if isinstance(pattern, re.Pattern) else pattern in text):
                return time.perf_counter() - self.t0
            self.read_some(0.02)
        raise TimeoutError(f"{pattern!r} not seen in {timeout}s")

    def drain(self, seconds: float) -> None:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            self.read_some(0.01)

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self, keys: bytes = b"q", timeout: float = 20.0) -> None:
        try:
            os.write(self.fd, keys)
        except OSError:
            pass
        end = time.perf_counter() + timeout
        while time.perf_counter() < end:
            self.read_some(0.05)
            pid, _ = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                break
        else:
            os.kill(self.pid, signal.SIGTERM)
            os.waitpid(self.pid, 0)
        os.close(self.fd)


def child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "NO_COLOR")}
    env.update(TERM="xterm-256color", PYTHONPATH=str(ROOT), XDG_CONFIG_HOME="/nonexistent-zdd-bench")
    return env


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    k = max(0, min(len(s) - 1, round(p / 100 * (len(s) - 1))))
    return s[k]


def spread(values: list[float]) -> str:
    ms = [v * 1000 for v in values]
    return f"p50 {pct(ms, 50):.1f} ms   p90 {pct(ms, 90):.1f} ms   p99 {pct(ms, 99):.1f} ms   max {max(ms):.1f} ms"


def bench_cold_start(runs: int) -> None:
    from zdd_tui.ui.sandbox_proc import start_sandbox

    sp = start_sandbox(3)
    try:
        config = str(sp.config_path)
        firsts, fills, rss_fill, rss_live = [], [], [], []
        for i in range(runs):
            p = PtyProc([sys.executable, "-m", "zdd_tui", "--config", config], child_env())
            try:
                firsts.append(p.expect(b"zdd-tui", 30))
                fills.append(p.expect(b"Droplets (3)", 30))
                rss_fill.append(p.rss_mb())
                if i == 0:
                    p.drain(10)
                    rss_live.append(p.rss_mb())
            finally:
                p.stop()
        print(f"cold start, first frame:              median {statistics.median(firsts) * 1000:.0f} ms  "
              f"(runs {runs}, min {min(firsts) * 1000:.0f}, max {max(firsts) * 1000:.0f})")
        print(f"cold start, dashboard with fleet data: median {statistics.median(fills) * 1000:.0f} ms  "
              f"(min {min(fills) * 1000:.0f}, max {max(fills) * 1000:.0f})")
        print(f"RSS at first data:                     median {statistics.median(rss_fill):.1f} MB")
        print(f"RSS after 10 s of live polling:        {rss_live[0]:.1f} MB")
    finally:
        sp.stop()


# -- the key-latency child: the real app, a synthetic 200-host stream ------------------------------

def run_stream_child(hosts: int, per_tick: int = 20) -> None:
    from zdd_tui.commands.console import prepare_textual

    prepare_textual()  # as `zdd-tui` does, before Textual is imported
    from zdd_tui.events import LogLine
    from zdd_tui.rollout.events import HealthChanged, Outcome, OutcomeStatus, Phase, PhaseChanged, Progress
    from zdd_tui.ui.app import ZddApp
    sys.path.insert(0, str(ROOT / "tests"))  # the fake world (tests/rollout/fakes.py) and tests/ui/fake.py
    from ui.fake import FakeSource

    class Streaming(FakeSource):
        async def run(self, plan, listener, cancel):
            # A fixed LCG instead of `random`: the same stream every run.
            x, n, done = 12345, len(plan.hosts), [0.0] * len(plan.hosts)
            phases = list(Phase)[1:8]
            while not cancel.is_set():
                for _ in range(per_tick):  # per 10 ms tick: 20 gives ~2,000 events/s
                    x = (1103515245 * x + 12345) & 0x7FFFFFFF
                    i = x % n
                    h = plan.hosts[i].name
                    self.clock.t += 0.001
                    kind = x % 10
                    if kind < 6:
                        done[i] = (done[i] + 0.01) % 1.0
                        listener(Progress(h, done[i], sum(done) / n, at=self.clock.t))
                    elif kind < 8:
                        listener(PhaseChanged(h, phases[x % len(phases)], at=self.clock.t))
                    elif kind < 9:
                        listener(HealthChanged(h, "lb" if x & 1 else "direct", bool(x & 2), at=self.clock.t))
                    else:
                        listener(LogLine(h, f"step {x % 1000}", at=self.clock.t))
                await asyncio.sleep(0.01)
            return Outcome(OutcomeStatus.INTERRUPTED, "benchmark stopped", plan.to_tag)

    src = Streaming(n_hosts=hosts)

    class BenchApp(ZddApp):
        def on_ready(self) -> None:
            self.run_worker(self._go())  # a worker: waiting here would block the message loop

        async def _go(self) -> None:
            while not (self.fleet.droplets and self.fleet.tags):  # noqa: ASYNC110 - the app has no event for this
                await asyncio.sleep(0.05)
            self.start_rollout(await src.plan("deploy", "sha-c0ffee1"))

    BenchApp(src, poll="once", handle_signals=True).run()


def bench_keys(hosts: int, presses: int, rate: int) -> None:
    argv = [sys.executable, __file__, "--stream-child", str(hosts), "--rate", str(rate)]
    p = PtyProc(argv, child_env())
    try:
        p.expect(b"Deploying to sha-c0ffee1", 60)
        p.drain(2.0)  # let the stream reach its steady state
        opened = []
        for _ in range(presses):
            mark = len(p.buf)
            t = time.perf_counter()
            os.write(p.fd, b"?")
            p.expect(b"What it does", 10, since=mark)
            opened.append(time.perf_counter() - t)
            os.write(p.fd, b"\x1b")  # close it again (not timed: nothing on screen marks "gone")
            p.drain(0.2)
        # A light key: Down scrolls the host list one row; the row that comes into view is only
        # ever painted when visible, so its name arriving on the pty marks the repaint.
        row = "app-(\\d+) {2,}(?:━|╺|╸)".encode()  # a host row: name, padding, then its bar
        p.drain(1.0)  # a lone Esc (closing help) is only taken as Esc after a pause
        os.write(p.fd, b"\x1b[B")  # Down, then Home: the list moves, so its rows are painted anew
        p.drain(0.5)
        mark = len(p.buf)
        os.write(p.fd, b"\x1b[H")  # Home: the list at its top, then read which rows are in view
        p.expect(re.compile(row.replace(rb"(\d+)", b"1")), 10, since=mark)
        mark = len(p.buf)  # rows painted from here on are the ones in view (the stream repaints them)
        p.drain(1.0)
        seen = [int(n) for n in re.findall(row, ANSI.sub(b"", p.buf[mark:]))]
        last = max(seen)
        scrolled = []
        for k in range(1, min(presses, hosts - last) + 1):
            mark = len(p.buf)
            t = time.perf_counter()
            os.write(p.fd, b"\x1b[B")
            p.expect(re.compile(row.replace(rb"(\d+)", str(last + k).encode())), 10, since=mark)
            scrolled.append(time.perf_counter() - t)
            p.drain(0.05)
        print(f"key press to repaint, {hosts} hosts streaming (~{rate:,} events/s):")
        print(f"  ? (help over the rollout view), {len(opened)} presses: {spread(opened)}")
        if scrolled:
            print(f"  Down (scroll the hosts), {len(scrolled)} presses:        {spread(scrolled)}")
        print(f"  RSS of that console: {p.rss_mb():.1f} MB")
    finally:
        os.kill(p.pid, signal.SIGTERM)
        p.stop(b"", timeout=20)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--presses", type=int, default=100)
    ap.add_argument("--hosts", type=int, default=200)
    ap.add_argument("--skip-cold", action="store_true", help="only the key-latency part")
    ap.add_argument("--rate", type=int, default=2000, help="engine events a second in the stream (default 2000)")
    ap.add_argument("--stream-child", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.stream_child:
        run_stream_child(args.stream_child, max(0, round(args.rate / 100)))
        return
    print(f"zdd-tui console benchmarks ({os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f})")
    if not args.skip_cold:
        bench_cold_start(args.runs)
    bench_keys(args.hosts, args.presses, args.rate)


if __name__ == "__main__":
    main()
