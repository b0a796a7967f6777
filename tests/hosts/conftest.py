"""A real OpenSSH server on 127.0.0.1 for the host tests.

sshd runs key-only, with its own host key, from a 0700 directory under root's home (StrictModes
refuses key files below the 1777 /tmp). It needs /run/sshd (privilege separation); rather than
creating that on the machine, each sshd runs in a private mount namespace with a tmpfs on /run,
so nothing is left behind. Every process is ended by the PID we started.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import asyncssh
import pytest
import tiers
from ports import free_port


class PortTaken(RuntimeError):
    """sshd could not bind its port: another process took it after free_port() chose it."""


@dataclass
class SSHD:
    dir: Path
    port: int
    client_key: asyncssh.SSHKey
    host_key: asyncssh.SSHKey
    sshd_bin: str = "sshd"
    proc: subprocess.Popen | None = None
    extra_config: tuple[str, ...] = ()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def client_key_text(self) -> str:
        return self.client_key.export_private_key("openssh").decode()

    @property
    def host_fingerprint(self) -> str:
        return self.host_key.get_fingerprint("sha256")

    def write_files(self) -> Path:
        hk = self.dir / "host_ed25519"
        hk.write_bytes(self.host_key.export_private_key("openssh"))
        hk.chmod(0o600)
        ak = self.dir / "authorized_keys"
        ak.write_bytes(self.client_key.export_public_key("openssh"))
        ak.chmod(0o600)
        conf = self.dir / "sshd_config"
        conf.write_text(
            "\n".join(
                [
                    f"Port {self.port}",
                    "ListenAddress 127.0.0.1",
                    f"HostKey {hk}",
                    f"PidFile {self.dir}/sshd.pid",
                    f"AuthorizedKeysFile {ak}",
                    "PubkeyAuthentication yes",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "PermitRootLogin prohibit-password",
                    "UsePAM no",
                    "StrictModes yes",
                    "AllowTcpForwarding local",
                    "X11Forwarding no",
                    "PrintMotd no",
                    "MaxSessions 50",
                    "MaxStartups 50",
                    "LogLevel VERBOSE",
                    *self.extra_config,
                    "",
                ]
            )
        )
        conf.chmod(0o600)
        return conf

    def start(self) -> None:
        conf = self.write_files()
        script = (
            "mount -t tmpfs -o mode=755 zdd-sshd /run && mkdir -m 755 /run/sshd && "
            'exec "$1" -D -e -f "$2"'
        )
        log_path = self.dir / "sshd.log"
        log_start = log_path.stat().st_size if log_path.exists() else 0  # this start's lines only
        # unshare execs sh, which execs sshd: the PID we hold is sshd's.
        self.proc = subprocess.Popen(
            ["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sshd-wrap", self.sshd_bin, str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=open(log_path, "ab"),
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                log = log_path.read_bytes()[log_start:].decode(errors="replace")[-2000:]
                code, self.proc = self.proc.returncode, None
                if "Address already in use" in log:
                    raise PortTaken(f"sshd could not bind 127.0.0.1:{self.port}")
                raise RuntimeError(f"sshd exited with {code}: {log}")
            # Its own log says it bound the port, so whatever answers there is this sshd.
            log = log_path.read_bytes()[log_start:].decode(errors="replace")
            bound = f"Server listening on 127.0.0.1 port {self.port}." in log
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    if bound and s.recv(4).startswith(b"SSH-"):
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("sshd did not start listening within 10s")

    def session_pids(self) -> list[int]:
        """PIDs of the per-connection sshd processes (children of our listener)."""
        out = []
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                stat = Path(f"/proc/{d}/stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[1]) == self.pid and fields[0] != "Z":
                out.append(int(d))
        return out

    def stop(self) -> None:
        if self.proc is None:
            return
        for pid in self.session_pids():
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self.proc = None


@pytest.fixture
def quiet_ports():
    """quiet_ports(n): n ports of 127.0.0.1 that nothing listens on, for the whole test.

    Each is held by a bound socket that does not listen: no other process can take it, a connect
    to it is refused, and a listener check (`ss -tln`) sees it free.
    """
    held: list[socket.socket] = []

    def take(n: int = 1) -> list[int]:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            held.append(s)
        return [s.getsockname()[1] for s in held[-n:]]

    yield take
    for s in held:
        s.close()


@pytest.fixture
def sshd_factory():
    tiers.require_root("a real OpenSSH server (sshd with AuthorizedKeysFile for root)")
    # unshare gives each sshd a private /run (util-linux, on every Debian system).
    tools = tiers.require_tools("sshd", "unshare", why="a real OpenSSH server", apt="openssh-server util-linux")
    home = pwd.getpwuid(0).pw_dir
    made: list[SSHD] = []
    dirs: list[str] = []

    def make(*, port: int | None = None, client_key: asyncssh.SSHKey | None = None, host_key=None,
             extra_config=()) -> SSHD:
        d = tempfile.mkdtemp(prefix=".zdd-test-sshd-", dir=home)
        os.chmod(d, 0o700)
        dirs.append(d)
        s = SSHD(
            dir=Path(d),
            port=port or free_port(),
            client_key=client_key or asyncssh.generate_private_key("ssh-ed25519"),
            host_key=host_key or asyncssh.generate_private_key("ssh-ed25519"),
            sshd_bin=tools["sshd"],
        )
        # extra_config: sshd_config lines, or a function of the server's directory returning them.
        s.extra_config = tuple(extra_config(s.dir) if callable(extra_config) else extra_config)
        made.append(s)
        for attempt in range(5):
            try:
                s.start()
                break
            except PortTaken:
                if port is not None or attempt == 4:
                    raise
                s.port = free_port()
        return s

    yield make
    for s in made:
        s.stop()
    for d in dirs:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def sshd(sshd_factory):
    return sshd_factory()


@pytest.fixture
def docker_host(sshd_factory):
    """An sshd whose sessions find the stand-in docker first on PATH."""

    def prepare(d: Path):
        bindir = d / "bin"
        bindir.mkdir()
        shutil.copy(Path(__file__).with_name("fake_docker.py"), bindir / "docker")
        (bindir / "docker").chmod(0o755)
        traefik = shutil.which("traefik") or "traefik"
        env = [f"PATH={bindir}:/usr/sbin:/usr/bin:/sbin:/bin", f"FAKE_DOCKER_STATE={d / 'docker-state.json'}",
               f"FAKE_TRAEFIK={traefik}"]
        return ("SetEnv " + " ".join(env),)

    return sshd_factory(extra_config=prepare)
