"""Application secrets and the release command in the lab, against the real image (the sample
service built by `zdd-tui build --push`), with `deploy.strategy: local-swap`:

- a secret set in the lab's keyring (`zdd-tui secret set`, Secret Service) and one given as
  ZDD_SECRET_<NAME> reach the app containers' environment on every host; their values appear in
  no file zdd-tui or a host keeps after the start (the hosts' /root, /tmp, /run, state directory
  with its journal, and Docker's data; the project, the operator's state and the sandbox's
  directory), in no process's argv sampled during the deploys, in no output; the only copies are
  Docker's own record of a container's environment, which README says root can read;
- a release command that fails (the sample service's `migrate`, given a file it cannot write)
  refuses the deploy with exit 4 and its last lines, and the fleet is exactly as it was: every
  container (id, state, start time), the proxy and the slot it routes to, what each host serves;
- a passing one runs once, in a one-off container on the first host, before any host changes
  (the hosts' Docker events), with its output shown.

The tests run in order and share one module-scoped setup; a failed step skips the rest (saying so).
"""

from __future__ import annotations

import json
import os
import re
import secrets as random
import subprocess
import time
from pathlib import Path

import pytest

import labkit
from e2ekit import START_TIMEOUT, Swap, local_swap
from labkit import report
from loadgen import SecretWatcher

RELEASE = ["python3", "-m", "zdd_service", "migrate"]
MIGRATIONS_OK = "/tmp/zdd-migrations.log"  # inside the one-off container: writable, gone with it
MIGRATIONS_BAD = "/nonexistent/zdd-migrations.log"  # migrate exits 2: it cannot record the version

pytestmark = pytest.mark.steps


class Release(Swap):
    """The local-swap harness, with secrets in the keyring and the environment, and every output kept."""

    def __init__(self, lab: labkit.Lab, workdir: Path, **swap):
        super().__init__(lab, workdir, **swap)
        self.extra_env: dict[str, str] = {}
        self.outputs: list[str] = []
        self.values: dict[str, str] = {
            "DB_PASSWORD": "db-" + random.token_hex(16),  # through the keyring
            "API_KEY": "key-" + random.token_hex(16),  # through ZDD_SECRET_API_KEY
        }

    def env(self) -> dict[str, str]:
        return {**super().env(), **self.extra_env}

    def zdd(self, *args: str, **kw) -> subprocess.CompletedProcess:
        cp = super().zdd(*args, **kw)
        self.outputs += [cp.stdout, cp.stderr]
        return cp

    def release_config(self, migrations_file: str) -> None:
        """zdd.yaml with the secrets, the release command and where it records its migration."""
        self.config()
        path = self.project / "zdd.yaml"
        text = path.read_text()
        text = text.replace("  admin_port: 9090\n", "  admin_port: 9090\n  secrets: [DB_PASSWORD, API_KEY]\n"
                            f"  env:\n    ZDD_MIGRATIONS_FILE: \"{migrations_file}\"\n", 1)
        text = text.replace("deploy:\n", f"deploy:\n  release_command: {json.dumps(RELEASE)}\n"
                            "  release_timeout_seconds: 120\n", 1)
        assert "secrets: [DB_PASSWORD" in text and "release_command" in text, text
        path.write_text(text)

    # -- what the hosts have ----------------------------------------------------------------
    def fleet(self) -> dict[str, dict]:
        """Every container on every host (id, name, image, state, start, restarts), the slot the
        proxy routes to and the version each host serves."""
        out = {}
        for h in self.lab.hosts:
            cs = sorted((c["Id"], c["Name"], c["Config"]["Image"], c["State"]["Status"], c["State"]["StartedAt"],
                         c.get("RestartCount", 0)) for c in self.containers(h))
            out[h.name] = {"containers": cs, "active": self.active_slot(h),
                         "serves": self.served(h)["version"]}
        return out

    def events(self, h: labkit.Host, since: float, until: float) -> list[dict]:
        """The host's container events between two instants (epoch seconds)."""
        cp = self.lab.ssh(h, f"docker events --since {since:.3f} --until {until:.3f} --filter type=container "
                             "--format '{{json .}}'")
        return [json.loads(x) for x in cp.stdout.splitlines() if x.strip()]


@pytest.fixture(scope="module")
def rel(lab):
    # The product's default canary (on, for a local-swap fleet of 3): these deploys go through it.
    with local_swap(lab, "release", Release, batch_size=2, start_timeout=START_TIMEOUT, canary=None) as e:
        e.release_config(MIGRATIONS_OK)
        yield e


def _deploy(e: Release, tag: str, *, expect: int, label: str) -> tuple[subprocess.CompletedProcess, float, float]:
    e.extra_env = {"ZDD_SECRET_API_KEY": e.values["API_KEY"]}
    try:
        t0 = time.time()
        cp = e.zdd("deploy", "--tag", tag, "--yes", expect=expect, label=label)
        t1 = time.time() + 1
    finally:
        e.extra_env = {}
    return cp, t0, t1


def _release_ran_first(e: Release, tag: str, since: float, until: float) -> str:
    """Exactly one one-off container of `tag` was started, on the first host, and before it
    started no other container was created on any host; what was seen, in words."""
    ref_tail = f"/app:{tag}"
    starts, creates = [], []
    for h in e.lab.hosts:
        for ev in e.events(h, since, until):
            attrs = ev.get("Actor", {}).get("Attributes", {})
            action = ev.get("Action") or ev.get("status")
            when = int(ev.get("timeNano") or ev["time"] * 1_000_000_000)
            if attrs.get("zdd.release") == "1":
                if action == "start":
                    starts.append((when, h.name, attrs.get("image", "")))
            elif action in ("create", "start", "stop", "kill", "die", "destroy"):
                creates.append((when, h.name, action, attrs.get("name", "")))
    assert len(starts) == 1, f"release containers started: {starts}"
    at, host, image = starts[0]
    assert host == e.lab.hosts[0].name and image.endswith(ref_tail), starts
    first = min(creates) if creates else None
    assert first is not None, "no host changed at all"
    assert at < first[0], f"a host changed before the release command started: {first} (release at {at})"
    return (f"release container on {host} started {(first[0] - at) / 1e9:.2f} s before the first host change "
            f"({first[2]} {first[3]} on {first[1]}); {len(creates)} container events after it")


def _secret_env_of(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(x.decode(errors="replace").split("=", 1) for x in raw if b"=" in x)


# ------------------------------------------------------------------------------------------


def test_01_setup_and_a_secret_in_the_keyring(rel):
    e = rel
    e.login_and_setup()
    e.zdd("secret", "set", "DB_PASSWORD", stdin=e.values["DB_PASSWORD"] + "\n", label="secret set (keyring)")
    cp = e.zdd("secret", "list", "--json", label="secret list")
    assert "DB_PASSWORD" in cp.stdout
    # A deploy without API_KEY anywhere is refused, naming it, before anything changes.
    before = {h.name: sorted((c["Id"], c["State"]["Status"]) for c in e.containers(h)) for h in e.lab.hosts}
    cp = e.zdd("deploy", "--tag", "sha-0000000", "--yes", expect=2, label="deploy without API_KEY")
    assert "API_KEY" in cp.stderr and "ZDD_SECRET_API_KEY" in cp.stderr, cp.stderr
    assert {h.name: sorted((c["Id"], c["State"]["Status"]) for c in e.containers(h)) for h in e.lab.hosts} == before


def test_02_first_deploy_gets_the_secrets_and_runs_the_release_once_first(rel):
    e = rel
    v1 = e.build("v1", "v1")
    # From here on every process's argv is sampled (the hosts' namespaces included).
    e.watch = SecretWatcher(e.values, [], interval=0.05).start()
    cp, t0, t1 = _deploy(e, v1, expect=0, label="deploy v1 (secrets, release)")
    out = cp.stdout + cp.stderr
    assert out.count(f"migrated to version {v1}") == 1, out
    report("first deploy: " + _release_ran_first(e, v1, t0, t1))
    for h in e.lab.hosts:
        assert e.active_slot(h) == "a" and e.served(h)["version"] == v1
        apps = [c for c in e.containers(h) if (c["Config"].get("Labels") or {}).get("zdd.slot")]
        assert len(apps) == 1 and apps[0]["State"]["Status"] == "running", apps
        env = _secret_env_of(apps[0]["State"]["Pid"])  # the container's process, from the root PID namespace
        for name, value in e.values.items():
            assert env.get(name) == value, f"{name} not in the environment of {apps[0]['Name']} on {h.name}"


def test_03_a_failing_release_command_changes_nothing(rel):
    e = rel
    e.release_config(MIGRATIONS_BAD)
    e.change_service()
    v2 = e.build("v2", "v2")
    before = e.fleet()
    cp, t0, t1 = _deploy(e, v2, expect=4, label="deploy v2 (release fails)")
    out = cp.stdout + cp.stderr
    assert "release command exited with 2" in out, out
    assert "release | zdd-service: error: cannot record the migration" in cp.stdout, cp.stdout  # its output, shown
    after = e.fleet()
    assert after == before, (before, after)
    for h in e.lab.hosts:
        left = [c["Name"] for c in e.containers(h) if (c["Config"].get("Labels") or {}).get("zdd.tag") == v2]
        assert not left, f"{h.name} keeps containers of the refused version: {left}"
    starts = [ev for h in e.lab.hosts for ev in e.events(h, t0, t1)
              if (ev.get("Action") or ev.get("status")) == "create"
              and (ev.get("Actor", {}).get("Attributes", {}).get("zdd.release") != "1")]
    assert not starts, starts
    report(f"failing release command: exit 4, {sum(len(f['containers']) for f in after.values())} containers, "
           f"proxies and served versions on {len(after)} hosts unchanged")


def test_04_a_passing_release_command_runs_once_before_any_host_changes(rel):
    e = rel
    e.release_config(MIGRATIONS_OK)
    v2 = e.tags["v2"]
    cp, t0, t1 = _deploy(e, v2, expect=0, label="deploy v2 (release passes)")
    out = cp.stdout + cp.stderr
    assert out.count(f"migrating to version {v2}") == 1 and out.count(f"migrated to version {v2}") == 1, out
    report("deploy v2: " + _release_ran_first(e, v2, t0, t1))
    for h in e.lab.hosts:
        assert e.active_slot(h) == "b" and e.served(h)["version"] == v2


def test_05_no_secret_value_anywhere_but_dockers_own_record(rel):
    e = rel
    lab = e.lab
    assert e.watch is not None
    e.watch.stop()
    cp = e.zdd("status", "--json", label="status --json")
    assert "DB_PASSWORD" in cp.stdout and "API_KEY" in cp.stdout
    needles = {k: v.encode() for k, v in e.values.items()}
    canary = f"zdd-lab-canary-{os.urandom(8).hex()}"  # proves the scan reaches a host's /run
    needles["canary"] = canary.encode()
    (lab.hosts[0].dir / "run" / "canary.txt").write_text(canary)
    # Docker's own records of a live container's environment (README: root can read it): its
    # config in the engine's data, containerd's metadata and the runtime's bundle of a running
    # one, and runc's spec of a process it execs in one (the image's HEALTHCHECK, every 5 s:
    # written to the host's /tmp, removed once started). Nothing else.
    live = {c["Id"] for h in lab.hosts for c in e.containers(h)}
    per_container = re.compile(r"/(?:containers|moby)/([0-9a-f]{64})/(?:config\.v2\.json|config\.json)$")
    engine_files = [re.compile(r"/docker/data/containerd/daemon/io\.containerd\.metadata\.v1\.bolt/meta\.db$"),
                    re.compile(r"/tmp/runc-process\d+$")]

    def dockers_own(path: str) -> bool:
        m = per_container.search(path)
        return bool(m and m.group(1) in live) or any(x.search(path) for x in engine_files)
    hits, kept, scanned = [], [], 0
    roots = [p for h in lab.hosts for p in h.fs_dirs] + [e.work]
    for root in roots:
        for dirpath, _dirs, files in os.walk(root):
            for f in files:
                p = os.path.join(dirpath, f)
                try:
                    if os.path.islink(p) or not os.path.isfile(p):
                        continue
                    with open(p, "rb") as fh:
                        data = fh.read(64 * 1024 * 1024)
                except OSError:
                    continue
                scanned += 1
                for name, n in needles.items():
                    if n in data:
                        (kept if name != "canary" and dockers_own(p) else hits).append(f"{name} in {p}")
    (lab.hosts[0].dir / "run" / "canary.txt").unlink()
    assert [x for x in hits if x.startswith("canary in ")], "the file scan missed the canary"
    hits = [x for x in hits if not x.startswith("canary")]
    in_output = [f"{k} in an output of zdd-tui" for k, v in e.values.items() if any(v in o for o in e.outputs)]
    report(f"secret scan: {scanned} files on {len(lab.hosts)} hosts and the operator's side, "
           f"{e.watch.samples} argv samples, {len(e.outputs)} outputs; hits: {len(hits) + len(e.watch.hits)}; "
           f"Docker's own records of a live container's environment: {len(kept)}")
    assert scanned > 1000
    assert e.watch.samples > 20
    assert not e.watch.hits, e.watch.hits
    assert not in_output, in_output
    assert not hits, "\n".join(hits)
    print("Docker's own records:\n" + "\n".join(kept))
    # the secret entries' directory on each host's memory-backed /run is empty after the starts
    for h in lab.hosts:
        left = lab.ssh(h, "ls -A /run/zdd-tui-0 /dev/shm/zdd-tui-0 2>/dev/null; true").stdout.split()
        assert not [x for x in left if not x.endswith(":")], (h.name, left)
