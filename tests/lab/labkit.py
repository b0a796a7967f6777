"""The lab: real OpenSSH servers, Docker engines and a registry on test hosts in network namespaces.

Layout of one lab (names all start with PREFIX, so a crashed run's leftovers can be found):

  root namespace:  bridge <prefix><id>br  10.213.N.1/24   (N = the lab's subnet index)
                   registry (Debian's docker-registry) on 10.213.N.1:5000 only
                   a private dbus-daemon + gnome-keyring-daemon (Secret Service)
  netns <prefix><id>-bld   10.213.N.2   builder Docker engine (for `zdd-tui build --push`)
  netns <prefix><id>-h1..  10.213.N.11+ per host: sshd (key-only) and a Docker engine

No namespace has a default route, and the root namespace does not forward (ip_forward is left as
it is), so lab traffic stays on the bridge. Each host's sshd runs in its own mount namespace with
per-host /root, /tmp, /run and /var/lib/zdd (bind mounts of directories under the host's own lab
directory), so the three hosts do not share state files, docker configs or temp files, and what a
host wrote can be inspected afterwards. The `docker` CLI in an SSH session talks to the host's own
engine because sshd sets DOCKER_HOST (sshd_config SetEnv): product code runs plain `docker ...`.

Every process the lab starts carries ZDD_LAB_RUN=<run dir> in its environment and is recorded by
PID; teardown stops them by PID (then sweeps the namespaces' PIDs and the marked processes),
unmounts what dockerd left, deletes namespaces and the bridge and removes the run directory.
"""

from __future__ import annotations

import contextlib
import fcntl
import http.client
import json
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

PREFIX = "zdl"  # every namespace, link, cgroup and run directory of the lab starts with this
LAB_ROOT = Path("/var/lib/zdd-lab")  # root-owned 0700; run-<id>/ per lab
CACHE_DIR = Path("/var/cache/zdd-lab")  # the base image tarball, kept between runs
LOCK_PATH = Path("/run/zdd-lab.lock")
MARK = "ZDD_LAB_RUN"
MADE_VAR_LIB_ZDD = "made-var-lib-zdd"  # marker: /var/lib/zdd (a mount point) was made by a lab

SUITE = "bookworm"
BASE_PACKAGES = ("python3", "python3-aiohttp")
BASE_RECIPE = 1  # bump when the prune/import recipe changes: a new cache file is made
BASE_IMAGE = "zdd-lab/base:bookworm-py3"
REGISTRY_PORT = 5000
TMPFS_SIZE = "8g"  # upper bound for a run dir (a 3-host lab uses under 1 GB)
DEFAULT_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"


REPORT: list[str] = []  # lines for pytest's terminal summary (timings, figures, leftovers)


def report(line: str) -> None:
    REPORT.append(line)


def log(msg: str) -> None:
    print(f"[lab {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def run(argv: list[str], *, check: bool = True, timeout: float = 120, **kw) -> subprocess.CompletedProcess:
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    cp = subprocess.run(argv, timeout=timeout, **kw)
    if check and cp.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} -> exit {cp.returncode}: {(cp.stderr or '').strip()[-2000:]}")
    return cp


# The programs the lab runs, found on PATH (root's PATH has the sbin directories), and the
# Debian packages that install them.
TOOLS = ("sshd", "dockerd", "docker-registry", "debootstrap", "gnome-keyring-daemon", "dbus-daemon", "ip",
         "nsenter", "ssh", "ssh-keygen", "docker")
APT_PACKAGES = ("openssh-server openssh-client docker.io docker-registry debootstrap gnome-keyring dbus iproute2 "
                "util-linux")


def tool(name: str) -> str:
    """The full path of a program the lab runs (sshd wants one to re-exec itself)."""
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(f"{name} not found on PATH (apt-get install {APT_PACKAGES})")
    return path


# --------------------------------------------------------------------------------------------
# processes


def proc_state(pid: int) -> str | None:
    """The state letter from /proc/PID/stat, None if gone. Z counts as gone (PID 1 reaps late)."""
    try:
        data = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    state = data.rsplit(")", 1)[1].split()[0]
    return None if state in ("Z", "X") else state


def alive(pid: int) -> bool:
    return proc_state(pid) is not None


def wait_gone(pids: list[int], timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    left = [p for p in pids if alive(p)]
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = [p for p in left if alive(p)]
    return left


def stop_pids(pids: list[int], timeout: float = 10.0, sig: int = signal.SIGTERM) -> None:
    """SIGTERM (or sig), wait, then SIGKILL what is left. Only PIDs we identified as ours."""
    pids = [p for p in pids if p > 1 and p != os.getpid() and alive(p)]
    for p in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(p, sig)
    left = wait_gone(pids, timeout)
    for p in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(p, signal.SIGKILL)
    wait_gone(left, 5)


def marked_pids(run_dir: str | None = None) -> list[int]:
    """PIDs whose environment carries the lab mark (of one run dir, or of any run)."""
    found = []
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == os.getpid():
            continue
        try:
            env = Path(f"/proc/{d}/environ").read_bytes()
        except OSError:
            continue
        for item in env.split(b"\0"):
            if item.startswith(MARK.encode() + b"="):
                val = item.split(b"=", 1)[1].decode(errors="replace")
                if run_dir is None or val == run_dir:
                    if alive(int(d)):
                        found.append(int(d))
                break
    return found


def netns_list(prefix: str) -> list[str]:
    try:
        names = os.listdir("/run/netns")
    except FileNotFoundError:
        return []
    return sorted(n for n in names if n.startswith(prefix))


def netns_pids(name: str) -> list[int]:
    cp = run(["ip", "netns", "pids", name], check=False)
    return [int(x) for x in cp.stdout.split() if x.isdigit() and alive(int(x))]


def links_with_prefix(prefix: str) -> list[str]:
    cp = run(["ip", "-o", "link", "show"], check=False)
    out = []
    for line in cp.stdout.splitlines():
        parts = line.split(":", 2)
        if len(parts) >= 2:
            name = parts[1].strip().split("@")[0]
            if name.startswith(prefix):
                out.append(name)
    return out


def mounts_under(paths: list[str]) -> list[str]:
    """Mount points (from /proc/mounts, root mount namespace) at or under any of paths."""
    out = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        mp = line.split()[1].encode().decode("unicode_escape")
        for p in paths:
            if mp == p or mp.startswith(p.rstrip("/") + "/"):
                out.append(mp)
                break
    return out


def unmount_all(paths: list[str]) -> None:
    for _ in range(5):
        mps = mounts_under(paths)
        if not mps:
            return
        for mp in sorted(mps, key=len, reverse=True):
            if run(["umount", mp], check=False).returncode != 0:
                run(["umount", "-l", mp], check=False)


OUTSIDE_WATCH = ("/run/netns", "/etc/docker", "/var/lib/docker", "/var/lib/containerd", "/run/docker",
                 "/run/containerd", "/var/run/docker.sock", "/root/.docker", "/var/lib/zdd", "/run/sshd", "/tmp")


def outside_snapshot() -> set[str]:
    """Entries in places a lab's daemons might write to by default (outside its run dir)."""
    seen = set()
    for p in OUTSIDE_WATCH:
        if os.path.isdir(p) and not os.path.islink(p):
            with contextlib.suppress(OSError):
                seen.update(os.path.join(p, n) for n in os.listdir(p))
        if os.path.lexists(p):
            seen.add(p)
    return seen


def cgroup_dirs(prefix: str) -> list[str]:
    out = []
    base = Path("/sys/fs/cgroup")
    if not base.exists():
        return out
    for ctrl in base.iterdir():
        with contextlib.suppress(OSError):
            for d in ctrl.iterdir():
                if d.is_dir() and d.name.startswith(prefix):
                    out.append(str(d))
    return out


def remove_cgroups(prefix: str) -> None:
    for d in cgroup_dirs(prefix):
        # children first (docker makes one per container under its --cgroup-parent)
        for sub in sorted(Path(d).glob("**/"), key=lambda p: len(str(p)), reverse=True):
            with contextlib.suppress(OSError):
                os.rmdir(sub)


def leftovers(prefix: str = PREFIX, run_dir: str | None = None) -> dict[str, list]:
    """What of a lab (all labs with prefix, or one run dir) still exists. Empty lists = clean."""
    dirs = [run_dir] if run_dir else [str(p) for p in LAB_ROOT.glob("run-*")] if LAB_ROOT.exists() else []
    mount_paths = list(dirs) + [f"/run/netns/{n}" for n in netns_list(prefix)]
    return {
        "netns": netns_list(prefix),
        "links": links_with_prefix(prefix),
        "processes": marked_pids(run_dir),
        "mounts": mounts_under(mount_paths) if mount_paths else [],
        "cgroups": cgroup_dirs(prefix),
        "dirs": [d for d in dirs if os.path.exists(d)],
    }


def sweep(prefix: str, run_dirs: list[str]) -> None:
    """Remove everything of labs with this prefix: processes (by PID), mounts, netns, links, dirs."""
    for _ in range(3):
        pids: set[int] = set()
        for ns in netns_list(prefix):
            pids.update(netns_pids(ns))
        for rd in run_dirs:
            pids.update(marked_pids(rd))
        if not pids:
            break
        stop_pids(sorted(pids), timeout=5)
    unmount_all(run_dirs)
    for ns in netns_list(prefix):
        run(["ip", "netns", "del", ns], check=False)
        if os.path.exists(f"/run/netns/{ns}"):
            unmount_all([f"/run/netns/{ns}"])
            with contextlib.suppress(OSError):
                os.unlink(f"/run/netns/{ns}")
    for link in links_with_prefix(prefix):
        run(["ip", "link", "del", link], check=False)
    remove_cgroups(prefix)
    for rd in run_dirs:
        if os.path.exists(rd):
            unmount_all([rd])
            shutil.rmtree(rd, ignore_errors=True)


def clean_previous_runs() -> dict[str, list]:
    """Called with the lab lock held: anything with the prefix is a crashed run's leftover."""
    found = leftovers(PREFIX)
    if any(found.values()):
        log(f"cleaning leftovers of a previous run: {json.dumps(found)}")
        # stale marked processes of any run dir under LAB_ROOT
        stop_pids(found["processes"], timeout=5)
        sweep(PREFIX, found["dirs"])
    marker = LAB_ROOT / MADE_VAR_LIB_ZDD
    if marker.exists():
        with contextlib.suppress(OSError):
            os.rmdir("/var/lib/zdd")  # only if empty
            marker.unlink()
    return found


@contextlib.contextmanager
def lab_lock(wait: float = 0.0):
    """An exclusive lock so two pytest sessions never run labs at once. Yields False if busy."""
    fd = os.open(LOCK_PATH, os.O_RDWR | os.O_CREAT, 0o600)
    got = False
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                got = True
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    got = False
                    break
                time.sleep(0.5)
        if got:
            os.ftruncate(fd, 0)
            os.write(fd, str(os.getpid()).encode())
        yield got
    finally:
        if got:
            with contextlib.suppress(OSError):
                os.unlink(LOCK_PATH)
        os.close(fd)


# --------------------------------------------------------------------------------------------
# the base image (debootstrap, offline afterwards)


def apt_debian_mirror() -> str:
    """The Debian mirror apt uses here (deb822 .sources or one-line sources.list)."""
    files = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for f in files:
        with contextlib.suppress(OSError):
            text = f.read_text()
            if f.suffix == ".sources":
                for stanza in text.split("\n\n"):
                    fields = {}
                    for line in stanza.splitlines():
                        if ":" in line and not line.startswith("#"):
                            k, v = line.split(":", 1)
                            fields[k.strip().lower()] = v.strip()
                    if "bookworm" in fields.get("suites", "").split() and "main" in fields.get("components", ""):
                        return fields["uris"].split()[0]
            else:
                for line in text.splitlines():
                    parts = line.split()
                    if len(parts) >= 4 and parts[0] == "deb" and "bookworm" in parts:
                        uri = [p for p in parts[1:] if "://" in p]
                        if uri:
                            return uri[0]
    return "http://deb.debian.org/debian"


def base_tarball(timings: dict[str, float]) -> Path:
    """The pruned minbase rootfs tarball, made once and cached under CACHE_DIR."""
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    name = f"base-{SUITE}-{'-'.join(BASE_PACKAGES)}-r{BASE_RECIPE}.tar"
    tar = CACHE_DIR / name
    lockfd = os.open(CACHE_DIR / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lockfd, fcntl.LOCK_EX)
        if tar.exists() and tar.stat().st_size > 10_000_000:
            timings["debootstrap (cached)"] = 0.0
            log(f"base tarball cached: {tar} ({tar.stat().st_size // 1_000_000} MB)")
            return tar
        work = Path(f"{CACHE_DIR}/rootfs-{os.getpid()}")
        shutil.rmtree(work, ignore_errors=True)
        mirror = apt_debian_mirror()
        t0 = time.monotonic()
        log(f"debootstrap {SUITE} from {mirror} (once; cached afterwards)")
        argv = ["debootstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}"]
        if os.path.exists(DEFAULT_KEYRING):
            argv.append(f"--keyring={DEFAULT_KEYRING}")
        argv += [SUITE, str(work), mirror]
        try:
            cp = run(argv, check=False, timeout=900, env={**os.environ, MARK: str(CACHE_DIR)})
            if cp.returncode != 0:
                logf = work / "debootstrap" / "debootstrap.log"
                tail = logf.read_text()[-3000:] if logf.exists() else cp.stderr[-3000:]
                raise RuntimeError(f"debootstrap failed ({cp.returncode}): {tail}")
            timings["debootstrap"] = time.monotonic() - t0
            t1 = time.monotonic()
            for sub in ("usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/locale",
                        "usr/share/lintian", "usr/share/linda", "var/lib/apt/lists", "var/cache/apt",
                        "var/cache/debconf", "var/log"):
                p = work / sub
                if p.exists():
                    for child in p.iterdir():
                        if child.is_dir() and not child.is_symlink():
                            shutil.rmtree(child, ignore_errors=True)
                        else:
                            with contextlib.suppress(OSError):
                                child.unlink()
            for pyc in work.glob("usr/lib/python3*/**/__pycache__"):
                shutil.rmtree(pyc, ignore_errors=True)
            tmp = tar.with_suffix(".tmp")
            run(["tar", "-C", str(work), "--numeric-owner", "--xattrs", "-cf", str(tmp), "."], timeout=300)
            os.replace(tmp, tar)
            timings["base prune+tar"] = time.monotonic() - t1
        finally:
            # debootstrap may leave /proc or /sys mounted inside the target on failure
            unmount_all([str(work)])
            shutil.rmtree(work, ignore_errors=True)
        log(f"base tarball made: {tar} ({tar.stat().st_size // 1_000_000} MB)")
        return tar
    finally:
        os.close(lockfd)


# --------------------------------------------------------------------------------------------
# the lab


def docker_ping(sock: str, timeout: float = 1.0) -> bool:
    try:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        s.connect(sock)
        s.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
        data = s.recv(200)
        s.close()
        return data.startswith(b"HTTP/1.") and b" 200 " in data.split(b"\r\n", 1)[0]
    except OSError:
        return False


def http_get(host: str, port: int, path: str = "/", timeout: float = 3.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


@dataclass
class Engine:
    name: str
    netns: str
    dir: Path
    sock: str = ""
    proc: subprocess.Popen | None = None

    @property
    def docker_host(self) -> str:
        return f"unix://{self.sock}"

    def docker(self, *args: str, check: bool = True, timeout: float = 300, **kw) -> subprocess.CompletedProcess:
        return run(["docker", "-H", self.docker_host, *args], check=check, timeout=timeout, **kw)


@dataclass
class Host:
    name: str  # lab-1..N: the droplet name in the sandbox API
    netns: str
    ip: str
    dir: Path
    engine: Engine
    sshd: subprocess.Popen | None = None
    ssh_port: int = 22

    @property
    def fs_dirs(self) -> list[Path]:
        """The filesystem the lab gave this host: its /root, /tmp, /run, /var/lib/zdd, docker data."""
        return [self.dir / "root", self.dir / "tmp", self.dir / "run", self.dir / "varlibzdd",
                self.engine.dir / "data"]


@dataclass
class Lab:
    hosts_count: int = 3
    subnet_index: int = 0  # 10.213.<index>.0/24
    with_builder: bool = True
    with_registry: bool = True
    with_keyring: bool = True
    with_base_image: bool = True
    prefix: str = PREFIX
    run_id: str = field(default_factory=lambda: secrets.token_hex(2))
    timings: dict[str, float] = field(default_factory=dict)

    def __post_init__(self):
        self.tag = f"{self.prefix}{self.run_id}"  # e.g. zdl3fa1 (<= 7 chars: link names fit in 15)
        self.dir = LAB_ROOT / f"run-{self.run_id}"
        self.net = f"10.213.{self.subnet_index}"
        self.bridge = f"{self.tag}br"
        self.bridge_ip = f"{self.net}.1"
        self.registry_addr = f"{self.bridge_ip}:{REGISTRY_PORT}"
        self.hosts: list[Host] = []
        self.builder: Engine | None = None
        self.procs: list[tuple[str, subprocess.Popen]] = []
        self.keyring_env: dict[str, str] = {}
        self.client_key: Path = self.dir / "client" / "id_ed25519"
        self.known_hosts: Path = self.dir / "client" / "known_hosts"
        self.base_image = f"{self.registry_addr}/zdd-lab/base:bookworm-py3"
        self.registry_user = "zdd-lab"
        self.registry_password = secrets.token_urlsafe(24)  # a lab credential; must never reach a host's disk
        self._made_dirs: list[str] = []
        self._outside_before: set[str] = set()
        self._netns_dir_before = True
        self._netns_mount_before = True
        self._up = False

    # -- helpers ---------------------------------------------------------------------------
    def env(self, **extra: str) -> dict[str, str]:
        return {**os.environ, MARK: str(self.dir), **extra}

    def _spawn(self, label: str, argv: list[str], *, env: dict | None = None, logname: str | None = None,
               stdin=subprocess.DEVNULL) -> subprocess.Popen:
        logf = open(self.dir / "logs" / f"{logname or label}.log", "ab")
        p = subprocess.Popen(argv, stdin=stdin, stdout=logf, stderr=subprocess.STDOUT, env=env or self.env(),
                             start_new_session=True)
        logf.close()
        self.procs.append((label, p))
        self._write_state()
        return p

    def _write_state(self) -> None:
        state = {"run_id": self.run_id, "pids": {lbl: p.pid for lbl, p in self.procs}}
        with contextlib.suppress(OSError):
            (self.dir / "state.json").write_text(json.dumps(state))

    def _timed(self, key: str, t0: float) -> None:
        self.timings[key] = self.timings.get(key, 0.0) + (time.monotonic() - t0)

    def builder_env(self) -> dict[str, str]:
        """Environment for the docker CLI against the builder, logged in to the lab registry
        (its own DOCKER_CONFIG under the run dir)."""
        cfgdir = self.dir / "client" / "docker-config"
        if not (cfgdir / "config.json").exists():
            cfgdir.mkdir(mode=0o700, exist_ok=True)
            run(["docker", "-H", self.builder.docker_host, "login", "-u", self.registry_user, "--password-stdin",
                 self.registry_addr], input=self.registry_password, env=self.env(DOCKER_CONFIG=str(cfgdir)))
        return self.env(DOCKER_CONFIG=str(cfgdir))

    def host_login_script(self, inner: str) -> tuple[str, str]:
        """(remote shell command, stdin) running `inner` with a temporary docker login on a host;
        the password goes over stdin and the temporary config is removed afterwards."""
        cmd = ("set -e; d=$(mktemp -d); trap 'rm -rf \"$d\"' EXIT; export DOCKER_CONFIG=$d; "
               f"docker login -u {self.registry_user} --password-stdin {self.registry_addr} >/dev/null; {inner}")
        return cmd, self.registry_password

    def ssh_argv(self, host: Host, *command: str) -> list[str]:
        return ["ssh", "-i", str(self.client_key), "-o", f"UserKnownHostsFile={self.known_hosts}",
                "-o", "StrictHostKeyChecking=accept-new", "-o", "BatchMode=yes", "-o", "ConnectTimeout=5",
                "-o", "IdentitiesOnly=yes", "-o", "LogLevel=ERROR", "-p", str(host.ssh_port),
                f"root@{host.ip}", *command]

    def ssh(self, host: Host, *command: str, check: bool = True, timeout: float = 60,
            input: str | None = None) -> subprocess.CompletedProcess:
        return run(self.ssh_argv(host, *command), check=check, timeout=timeout, input=input)

    # -- up --------------------------------------------------------------------------------
    def up(self) -> Lab:
        t_all = time.monotonic()
        LAB_ROOT.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(LAB_ROOT, 0o700)
        self._outside_before = outside_snapshot()
        self._netns_dir_before = os.path.exists("/run/netns")
        self._netns_mount_before = bool(mounts_under(["/run/netns"]))
        self.dir.mkdir(mode=0o700)
        self._up = True
        # everything of the run lives on a tmpfs: images, layers and logs go with one umount
        # (deleting a few hundred MB of layers from this disk takes 10+ s)
        run(["mount", "-t", "tmpfs", "-o", f"mode=0700,size={TMPFS_SIZE}", f"zdd-lab-{self.run_id}", str(self.dir)])
        (self.dir / "logs").mkdir()
        if run(["ip", "route", "show", f"{self.net}.0/24"], check=False).stdout.strip():
            raise RuntimeError(f"{self.net}.0/24 is already routed here; pick another subnet_index")

        t0 = time.monotonic()
        self._network()
        self._timed("namespaces+bridge", t0)

        t0 = time.monotonic()
        self._ssh_keys()
        if self.with_registry:
            self._registry()
        # sshd first: each host's dockerd joins its sshd's mount namespace (see _sshd)
        for h in self.hosts:
            self._sshd(h)
        self._engines()
        if self.with_keyring:
            self._keyring()
        self._wait_ready()
        self._timed("engines+sshd+registry ready", t0)

        if self.with_base_image and self.builder is not None:
            tar = base_tarball(self.timings)
            t0 = time.monotonic()
            with open(tar, "rb") as f:
                self.builder.docker("import",
                                    "--change", "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                                    "--change", "ENV LANG=C.UTF-8", "-", self.base_image, stdin=f,
                                    capture_output=True, timeout=300)
            self._timed("docker import (builder)", t0)
            if self.with_registry:
                t0 = time.monotonic()
                self.builder.docker("push", self.base_image, timeout=300, env=self.builder_env())
                self._timed("push base to registry", t0)
        self.timings["lab up (total)"] = time.monotonic() - t_all
        return self

    def _network(self) -> None:
        run(["ip", "link", "add", self.bridge, "type", "bridge"])
        run(["ip", "addr", "add", f"{self.bridge_ip}/24", "dev", self.bridge])
        run(["ip", "link", "set", self.bridge, "up"])
        names = [("bld", f"{self.net}.2")] if self.with_builder else []
        names += [(f"h{i + 1}", f"{self.net}.{11 + i}") for i in range(self.hosts_count)]
        for short, ip in names:
            ns = f"{self.tag}-{short}"
            veth, peer = f"{self.tag}{short}", f"{self.tag}{short}p"
            run(["ip", "netns", "add", ns])
            run(["ip", "link", "add", veth, "type", "veth", "peer", "name", peer])
            run(["ip", "link", "set", veth, "master", self.bridge])
            run(["ip", "link", "set", veth, "up"])
            run(["ip", "link", "set", peer, "netns", ns])
            nx = ["ip", "netns", "exec", ns]
            run([*nx, "ip", "link", "set", peer, "name", "eth0"])
            run([*nx, "ip", "addr", "add", f"{ip}/24", "dev", "eth0"])
            run([*nx, "ip", "link", "set", "eth0", "up"])
            run([*nx, "ip", "link", "set", "lo", "up"])
            d = self.dir / short
            d.mkdir(mode=0o700)
            eng = Engine(name=short, netns=ns, dir=d / "docker", sock=str(d / "docker" / "docker.sock"))
            if short == "bld":
                self.builder = eng
            else:
                self.hosts.append(Host(name=f"lab-{short[1:]}", netns=ns, ip=ip, dir=d, engine=eng))

    def _ssh_keys(self) -> None:
        (self.dir / "client").mkdir(mode=0o700)
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"zdd-lab-{self.run_id}", "-f", str(self.client_key)])

    def _registry(self) -> None:
        rd = self.dir / "registry"
        rd.mkdir(mode=0o700)
        (rd / "data").mkdir()
        # htpasswd auth: pulls and pushes need the credentials the sandbox API hands out (as DO's
        # docker-credentials would), so a host without them cannot pull.
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import crypt  # deprecated in 3.11, still there; bcrypt is what the registry takes

        hashed = crypt.crypt(self.registry_password, crypt.mksalt(crypt.METHOD_BLOWFISH))
        (rd / "htpasswd").write_text(f"{self.registry_user}:{hashed}\n")
        cfg = rd / "config.yml"
        cfg.write_text(
            "version: 0.1\n"
            # the access log (on stdout: logs/registry.log) tells which host pulled what
            "log:\n  level: warn\n  accesslog:\n    disabled: false\n"
            f"storage:\n  filesystem:\n    rootdirectory: {rd / 'data'}\n  delete:\n    enabled: true\n"
            f"http:\n  addr: {self.registry_addr}\n  secret: {secrets.token_hex(16)}\n"
            "  headers:\n    X-Content-Type-Options: [nosniff]\n"
            f"auth:\n  htpasswd:\n    realm: zdd-lab\n    path: {rd / 'htpasswd'}\n"
        )
        self._spawn("registry", [tool("docker-registry"), "serve", str(cfg)])

    def _engines(self) -> None:
        if self.builder:
            self._engine_dirs(self.builder)
            self._start_engine(self.builder)
        for h in self.hosts:
            self._engine_dirs(h.engine)
            self._start_engine(h.engine, mount_ns_of=self._mount_ns_ready(h))

    def _engine_dirs(self, e: Engine) -> None:
        e.dir.mkdir(mode=0o700)
        for sub in ("data", "exec"):
            (e.dir / sub).mkdir(mode=0o700)
        # the trust key would go to /etc/docker/key.json (shared, left behind): keep it here
        (e.dir / "daemon.json").write_text(json.dumps({"deprecated-key-path": str(e.dir / "key.json")}) + "\n")

    def _mount_ns_ready(self, h: Host, timeout: float = 20) -> int:
        """The PID of the host's sshd once its shell has made the host's bind mounts and exec'd it."""
        assert h.sshd is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if h.sshd.poll() is not None:
                raise RuntimeError(f"sshd of {h.name} exited with {h.sshd.returncode}: {self.log_tails()}")
            with contextlib.suppress(OSError):
                if Path(f"/proc/{h.sshd.pid}/comm").read_text().strip() == "sshd":
                    return h.sshd.pid
            time.sleep(0.02)
        raise RuntimeError(f"sshd of {h.name} not started in {timeout}s: {self.log_tails()}")

    def _start_engine(self, e: Engine, mount_ns_of: int | None = None) -> None:
        """Start (or start again) an engine's dockerd in its network namespace; a host's joins the
        mount namespace of that host's sshd, so a path a command over SSH wrote (a bind-mounted
        config directory under /var/lib/zdd, say) is the path a container mounts."""
        ns = ["nsenter", f"--net=/run/netns/{e.netns}"]
        if mount_ns_of is not None:
            ns.append(f"--mount=/proc/{mount_ns_of}/ns/mnt")
        argv = [*ns, tool("dockerd"),
                "--config-file", str(e.dir / "daemon.json"),
                "--iptables=false", "--ip6tables=false", "--bridge=none", "--ip-forward=false",
                "--ip-masq=false", "--data-root", str(e.dir / "data"), "--exec-root", str(e.dir / "exec"),
                "--pidfile", str(e.dir / "docker.pid"), "-H", f"unix://{e.sock}",
                "--insecure-registry", self.registry_addr, "--cgroup-parent", f"/{e.netns}",
                "--shutdown-timeout", "5", "--log-level", "warn"]
        e.proc = self._spawn(f"dockerd-{e.name}", argv)

    def reboot_engine(self, h: Host, timeout: float = 60) -> float:
        """A host's reboot as far as its containers go: dockerd stopped (SIGTERM: it stops its
        containers as a shutdown does) and started again, which starts what its restart policies
        say. Returns the seconds until the engine answered again."""
        assert h.engine.proc is not None
        t0 = time.monotonic()
        old = h.engine.proc
        stop_pids([old.pid], timeout=30)
        with contextlib.suppress(Exception):
            old.wait(timeout=5)
        self.procs = [(lbl, p) for lbl, p in self.procs if p is not old]
        self._start_engine(h.engine, mount_ns_of=self._mount_ns_ready(h))
        deadline = time.monotonic() + timeout
        while not docker_ping(h.engine.sock):
            if h.engine.proc is not None and h.engine.proc.poll() is not None:
                raise RuntimeError(f"dockerd of {h.name} exited after the reboot: {self.log_tails()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"dockerd of {h.name} did not answer {timeout}s after the reboot")
            time.sleep(0.05)
        return time.monotonic() - t0

    def _sshd(self, h: Host) -> None:
        for sub in ("root", "tmp", "run", "varlibzdd"):
            (h.dir / sub).mkdir(mode=0o700)
        os.chmod(h.dir / "tmp", 0o1777)
        os.chmod(h.dir / "run", 0o755)
        key = h.dir / "ssh_host_ed25519_key"
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"{h.name}", "-f", str(key)])
        ak = h.dir / "authorized_keys"
        ak.write_text(Path(str(self.client_key) + ".pub").read_text())
        os.chmod(ak, 0o600)
        cfg = h.dir / "sshd_config"
        cfg.write_text(
            f"ListenAddress {h.ip}:{h.ssh_port}\n"
            f"HostKey {key}\n"
            f"PidFile {h.dir / 'sshd.pid'}\n"
            f"AuthorizedKeysFile {ak}\n"
            "PubkeyAuthentication yes\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
            "PermitRootLogin prohibit-password\nUsePAM no\nStrictModes yes\nX11Forwarding no\n"
            "AllowTcpForwarding yes\nAllowStreamLocalForwarding no\nPermitTunnel no\n"
            "MaxSessions 50\nMaxStartups 50:30:100\nLogLevel VERBOSE\n"
            f"SetEnv DOCKER_HOST=unix://{h.engine.sock}\n"
            "Subsystem sftp internal-sftp\n"
        )
        # The shell gets its own mount namespace (slave of the root one), which the host's dockerd
        # joins: the bind mounts below are this host's only and vanish when its last process exits.
        # /var/lib/zdd needs a mount point in the root filesystem: made here if missing.
        if not os.path.exists("/var/lib/zdd"):
            os.mkdir("/var/lib/zdd", 0o755)
            (LAB_ROOT / MADE_VAR_LIB_ZDD).write_text("the lab made /var/lib/zdd as a mount point\n")
            self._made_dirs.append("/var/lib/zdd")
        script = (
            "set -e\n"
            f"mount --bind {h.dir / 'root'} /root\n"
            f"mount --bind {h.dir / 'tmp'} /tmp\n"
            f"mount --bind {h.dir / 'varlibzdd'} /var/lib/zdd\n"
            # a private /run: the host's own /run/sshd etc.; keep /run/netns reachable? not needed.
            f"mount --bind {h.dir / 'run'} /run\n"
            "mkdir -p -m 0755 /run/sshd\n"
            f"exec {shlex.quote(tool('sshd'))} -D -e -f {cfg}\n"
        )
        # Not `ip netns exec`: it remounts /sys, which hides the cgroup hierarchies the host's
        # dockerd (started in this mount namespace) needs. Slave propagation: the run dir's
        # tmpfs, unmounted in the root namespace at teardown, goes here too.
        h.sshd = self._spawn(f"sshd-{h.name}", ["nsenter", f"--net=/run/netns/{h.netns}", "unshare", "--mount",
                                                "--propagation", "slave", "sh", "-c", script])

    def _keyring(self) -> None:
        kd = self.dir / "keyring"
        for sub in ("home", "data", "config", "runtime"):
            (kd / sub).mkdir(parents=True, mode=0o700)
        bus = kd / "bus"
        env = self.env(HOME=str(kd / "home"), XDG_DATA_HOME=str(kd / "data"), XDG_CONFIG_HOME=str(kd / "config"),
                       XDG_RUNTIME_DIR=str(kd / "runtime"))
        env.pop("DBUS_SESSION_BUS_ADDRESS", None)
        self._spawn("dbus", ["dbus-daemon", "--session", "--nofork", "--nopidfile", f"--address=unix:path={bus}"],
                    env=env)
        deadline = time.monotonic() + 10
        while not bus.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        env["DBUS_SESSION_BUS_ADDRESS"] = f"unix:path={bus}"
        p = self._spawn("gnome-keyring", ["gnome-keyring-daemon", "--foreground", "--unlock", "--components=secrets"],
                        env=env, stdin=subprocess.PIPE)
        assert p.stdin is not None
        p.stdin.write(b"lab-keyring-password\n")  # a throwaway keyring's password (not a product secret)
        p.stdin.close()
        self.keyring_env = {k: env[k] for k in ("HOME", "XDG_DATA_HOME", "XDG_CONFIG_HOME", "XDG_RUNTIME_DIR",
                                                 "DBUS_SESSION_BUS_ADDRESS")}

    def log_tails(self, chars: int = 1500) -> str:
        out = []
        for lf in sorted((self.dir / "logs").glob("*.log")):
            with contextlib.suppress(OSError):
                out.append(f"--- {lf.name}\n{lf.read_text(errors='replace')[-chars:]}")
        return "\n".join(out)

    def _wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        engines = ([self.builder] if self.builder else []) + [h.engine for h in self.hosts]
        pending_e = list(engines)
        pending_s = list(self.hosts)
        reg = self.with_registry
        t0 = time.monotonic()
        while pending_e or pending_s or reg:
            if time.monotonic() > deadline:
                raise RuntimeError(f"lab not ready in {timeout}s: engines {[e.name for e in pending_e]}, "
                                   f"sshd {[h.name for h in pending_s]}, registry {'no' if reg else 'ok'}; "
                                   f"logs:\n{self.log_tails()}")
            for label, p in self.procs:
                if p.poll() is not None:
                    logtxt = ""
                    for lf in (self.dir / "logs").glob("*.log"):
                        if lf.stem == label:
                            logtxt = lf.read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"{label} exited with {p.returncode}: {logtxt}")
            for e in list(pending_e):
                if docker_ping(e.sock):
                    pending_e.remove(e)
                    self.timings.setdefault("first engine ready", time.monotonic() - t0)
            for h in list(pending_s):
                with contextlib.suppress(OSError):
                    socket.create_connection((h.ip, h.ssh_port), timeout=0.5).close()
                    pending_s.remove(h)
            if reg:
                with contextlib.suppress(OSError, http.client.HTTPException):
                    if http_get(self.bridge_ip, REGISTRY_PORT, "/v2/", timeout=0.5)[0] in (200, 401):
                        reg = False
            time.sleep(0.05)
        self.timings["all engines ready"] = time.monotonic() - t0

    # -- down ------------------------------------------------------------------------------
    def down(self) -> dict[str, list]:
        """Stop everything by PID, unmount, delete namespaces/bridge/dirs. Returns leftovers (empty)."""
        if not self._up:
            return {}
        t0 = time.monotonic()
        engines = ([self.builder] if self.builder else []) + [h.engine for h in self.hosts]
        # 1. dockerd: SIGTERM stops its containers (shutdown-timeout) and its containerd
        stop_pids([e.proc.pid for e in engines if e.proc], timeout=20)
        # 2. the rest of ours, by PID: sshd, registry, keyring, dbus
        stop_pids([p.pid for _, p in self.procs], timeout=5)
        for _, p in self.procs:
            with contextlib.suppress(Exception):
                p.wait(timeout=5)
        # 3. anything still in our namespaces (containers, shims, ssh sessions) or marked as ours
        sweep(self.tag, [str(self.dir)])
        for d in self._made_dirs:
            with contextlib.suppress(OSError):
                os.rmdir(d)
            with contextlib.suppress(OSError):
                (LAB_ROOT / MADE_VAR_LIB_ZDD).unlink()
        with contextlib.suppress(OSError):
            LAB_ROOT.rmdir()  # only when empty (no other run)
        self._up = False
        self.timings["lab down"] = time.monotonic() - t0
        left = leftovers(self.tag, str(self.dir))
        # new entries in the watched places; /tmp only for names that look like ours (others' tests
        # use /tmp at the same time)
        new = sorted(outside_snapshot() - self._outside_before)
        # containerd-shim-runc-v2 keeps its sockets in /run/containerd/s (fixed path): the sockets
        # go with the shims, the directories stay. Remove them when they are new and empty.
        # `ip netns add` makes /run/netns (a bind mount on itself) on first use: undo that too.
        with contextlib.suppress(OSError):
            if not os.listdir("/run/netns"):
                if not self._netns_mount_before:
                    unmount_all(["/run/netns"])
                if not self._netns_dir_before:
                    os.rmdir("/run/netns")
        # dockerd makes /run/docker/plugins (fixed path) and leaves it empty.
        for d in ("/run/containerd/s", "/run/containerd", "/run/docker/plugins", "/run/docker"):
            if d in new:
                with contextlib.suppress(OSError):
                    os.rmdir(d)
        new = sorted(outside_snapshot() - self._outside_before)
        left["outside"] = [p for p in new if not p.startswith("/tmp/") or "zdd-lab" in p or self.tag in p]
        return left

    def print_timings(self, title: str = "lab timings") -> str:
        lines = [f"{title}:"] + [f"  {k:<32} {v:7.2f} s" for k, v in self.timings.items()]
        text = "\n".join(lines)
        print(text, file=sys.stderr, flush=True)
        return text
