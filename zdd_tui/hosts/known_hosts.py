"""Host-key pinning in a zdd-owned known_hosts file (OpenSSH line format, our own file).

The first key seen for a host is pinned only when a policy allows it (the console asks, the
headless setup needs --accept-new-host-keys); afterwards any other key is refused.
We keep our own file so that the operator's ~/.ssh/known_hosts neither widens nor narrows trust.
"""

from __future__ import annotations

import os
import tempfile
import threading
from pathlib import Path

import asyncssh

from zdd_tui.errors import ZddError
from zdd_tui.rollout.interfaces import HostUnreachable


def default_known_hosts_path() -> Path:
    """`$ZDD_KNOWN_HOSTS`, else `$XDG_STATE_HOME/zdd-tui/known_hosts` (~/.local/state/...)."""
    env = os.environ.get("ZDD_KNOWN_HOSTS")
    if env:
        return Path(env)
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "zdd-tui" / "known_hosts"


def host_spec(host: str, port: int) -> str:
    """OpenSSH's spelling: `host` for port 22, `[host]:port` otherwise."""
    return host if port == 22 else f"[{host}]:{port}"


def fingerprint(key: asyncssh.SSHKey) -> str:
    return key.get_fingerprint("sha256")


class HostKeyError(HostUnreachable, ZddError):
    """A host key problem: the host is unreachable for us until the operator acts."""

    def __init__(self, message: str, hint: str | None = None, *, host: str = "", port: int = 22):
        ZddError.__init__(self, message, hint)
        self.host = host
        self.port = port


class HostKeyChanged(HostKeyError):
    def __init__(self, host: str, port: int, old: list[str], new: str, path: Path):
        self.old_fingerprints = old
        self.new_fingerprint = new
        super().__init__(
            f"host key for {host_spec(host, port)} changed: pinned {', '.join(old)}, "
            f"the host now presents {new}; refusing to connect (this can be an attack)",
            f"if the host was rebuilt on purpose, verify {new} on its console, then remove its line "
            f"from {path} (or run with a fresh pin) and connect again to pin the new key",
            host=host,
            port=port,
        )


class HostKeyUnknown(HostKeyError):
    def __init__(self, host: str, port: int, new: str):
        self.new_fingerprint = new
        super().__init__(
            f"host {host_spec(host, port)} is not pinned yet (it presents {new}) and new host keys "
            "are not accepted here",
            "check the fingerprint, then run `zdd-tui setup --accept-new-host-keys` (or accept it in the console)",
            host=host,
            port=port,
        )


class KnownHosts:
    """The pinned keys, one `<spec> <keytype> <base64>` line each; rewritten atomically."""

    def __init__(self, path: str | os.PathLike | None = None):
        self.path = Path(path) if path is not None else default_known_hosts_path()
        self._lock = threading.Lock()

    def _read(self) -> list[tuple[str, str]]:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return []
        out = []
        for line in text.splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            spec, _, key = line.partition(" ")
            if key:
                out.append((spec, key.strip()))
        return out

    def keys_for(self, host: str, port: int) -> list[asyncssh.SSHKey]:
        spec = host_spec(host, port)
        keys = []
        for s, k in self._read():
            if s == spec:
                try:
                    keys.append(asyncssh.import_public_key(k))
                except (asyncssh.KeyImportError, ValueError):
                    continue  # an unreadable line never grants trust
        return keys

    def _write(self, entries: list[tuple[str, str]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(prefix=".known_hosts.", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w") as f:
                f.write("# zdd-tui pinned SSH host keys (one line per host key)\n")
                for spec, key in entries:
                    f.write(f"{spec} {key}\n")
            os.replace(tmp, self.path)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise

    def pin(self, host: str, port: int, key: asyncssh.SSHKey) -> None:
        line = key.export_public_key("openssh").decode().strip()
        # Drop the comment: the file identifies the host, not the key's origin.
        line = " ".join(line.split()[:2])
        with self._lock:
            entries = self._read()
            spec = host_spec(host, port)
            if (spec, line) not in entries:
                entries.append((spec, line))
                self._write(entries)
