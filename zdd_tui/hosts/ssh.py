"""SSH connections to the hosts (asyncssh): key from the credential store, pinned host keys, a pool.

The private key is read from the credential store and imported in memory; it is never written
to disk. One connection per (user, host, port) is kept and reused; a closed one is replaced on
the next use. Host keys are pinned in a zdd-owned file (see known_hosts.py).
"""

from __future__ import annotations

import asyncio
import inspect
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import asyncssh

from zdd_tui.errors import UsageError
from zdd_tui.hosts.known_hosts import (
    HostKeyChanged,
    HostKeyError,
    HostKeyUnknown,
    KnownHosts,
    fingerprint,
)
from zdd_tui.rollout.interfaces import HostUnreachable

# accept_new: True (pin any first key: headless --accept-new-host-keys), False (refuse), or an
# async/sync callback (host, port, "SHA256:...") -> bool (the console's question).
AcceptPolicy = bool | Callable[[str, int, str], bool | Awaitable[bool]]


class SSHUnreachable(HostUnreachable):
    """Connecting or staying connected to a host failed (timeout, refused, dropped, auth)."""


def load_private_key(text: str) -> asyncssh.SSHKey:
    """Import a private key held in memory. The error never quotes the key."""
    try:
        return asyncssh.import_private_key(text)
    except (asyncssh.KeyImportError, ValueError) as exc:
        raise UsageError(
            f"the stored SSH private key cannot be read ({type(exc).__name__})",
            "store a valid OpenSSH/PEM private key: `zdd-tui login --ssh-key PATH` or ZDD_SSH_PRIVATE_KEY",
        ) from None


class _Client(asyncssh.SSHClient):
    """Records the key the server presented when it is not among the pinned ones."""

    def __init__(self) -> None:
        self.presented: asyncssh.SSHKey | None = None

    def validate_host_public_key(self, host, addr, port, key) -> bool:
        # Called only for keys not in the trusted list we passed: never trust here; the pool
        # decides after the handshake fails (an async question cannot be asked from this hook).
        self.presented = key
        return False


@dataclass
class _Target:
    host: str
    port: int
    user: str


class SSHPool:
    """Reusable SSH connections, keyed by (user, host, port)."""

    def __init__(
        self,
        private_key: str | asyncssh.SSHKey | None = None,
        *,
        key_loader: Callable[[], str] | None = None,
        known_hosts: KnownHosts | str | None = None,
        accept_new: AcceptPolicy = False,
        user: str = "root",
        port: int = 22,
        connect_timeout: float = 10.0,
        keepalive_interval: float = 15.0,
    ):
        self._key = private_key if isinstance(private_key, asyncssh.SSHKey) else None
        self._key_text = private_key if isinstance(private_key, str) else None
        self._key_loader = key_loader
        self.known_hosts = known_hosts if isinstance(known_hosts, KnownHosts) else KnownHosts(known_hosts)
        self.accept_new = accept_new
        self.user = user
        self.port = port
        self.connect_timeout = connect_timeout
        self.keepalive_interval = keepalive_interval
        self._conns: dict[tuple[str, str, int], asyncssh.SSHClientConnection] = {}
        self._locks: dict[tuple[str, str, int], asyncio.Lock] = {}

    @classmethod
    def from_config(cls, config, *, context: str | None = None, **kw) -> SSHPool:
        """A pool for a project: key from the credential store of the config's context."""

        def loader() -> str:
            from zdd_tui.secrets import get_ssh_key

            return get_ssh_key(context or config.context)

        kw.setdefault("key_loader", loader)
        return cls(
            user=config.ssh.user,
            port=config.ssh.port,
            connect_timeout=float(config.ssh.connect_timeout_seconds),
            **kw,
        )

    def _client_key(self) -> asyncssh.SSHKey:
        if self._key is None:
            text = self._key_text
            if text is None:
                if self._key_loader is None:
                    raise UsageError("no SSH private key configured", "run `zdd-tui login` to store one")
                text = self._key_loader()
            self._key = load_private_key(text)
            self._key_text = None  # keep only the parsed key object
        return self._key

    async def connection(self, host: str, port: int | None = None,
                         user: str | None = None) -> asyncssh.SSHClientConnection:
        k = (user or self.user, host, port or self.port)
        lock = self._locks.setdefault(k, asyncio.Lock())
        async with lock:
            conn = self._conns.get(k)
            if conn is not None and not _is_closed(conn):
                return conn
            conn = await self._connect(_Target(host=k[1], port=k[2], user=k[0]))
            self._conns[k] = conn
            return conn

    def drop(self, host: str, port: int | None = None, user: str | None = None) -> None:
        """Forget a connection (after a failure) so the next use reconnects."""
        conn = self._conns.pop((user or self.user, host, port or self.port), None)
        if conn is not None:
            conn.abort()

    async def _connect(self, t: _Target) -> asyncssh.SSHClientConnection:
        pinned = self.known_hosts.keys_for(t.host, t.port)
        try:
            try:
                try:
                    return await self._open(t, pinned)
                except _NoCommonHostKeyType:
                    # Once more: a connection lost by accident must not look like a key change.
                    return await self._open(t, pinned)
            except _NoCommonHostKeyType:
                # The host no longer offers the pinned key's type: learn what it presents now
                # (offering every type) so the refusal below names the new fingerprint.
                conn = await self._open(t, [], any_key_type=True)
                conn.abort()  # unreachable in practice: an empty trust list never verifies
                raise SSHUnreachable(f"SSH to {t.host}:{t.port}: host key negotiation failed") from None
        except _Presented as p:
            new_fp = fingerprint(p.key)
            if pinned:
                raise HostKeyChanged(t.host, t.port, [fingerprint(k) for k in pinned], new_fp,
                                     self.known_hosts.path) from None
            if not await self._ask(t, new_fp):
                raise HostKeyUnknown(t.host, t.port, new_fp) from None
            # Connect again trusting exactly the key the operator accepted; a different key on
            # this second handshake is refused as a change.
            try:
                conn = await self._open(t, [p.key])
            except _Presented as p2:
                raise HostKeyChanged(t.host, t.port, [new_fp], fingerprint(p2.key), self.known_hosts.path) from None
            self.known_hosts.pin(t.host, t.port, p.key)
            return conn

    async def _ask(self, t: _Target, fp: str) -> bool:
        policy = self.accept_new
        if isinstance(policy, bool):
            return policy
        answer = policy(t.host, t.port, fp)
        if inspect.isawaitable(answer):
            answer = await answer
        return bool(answer)

    async def _open(self, t: _Target, trusted: list[asyncssh.SSHKey], *,
                    any_key_type: bool = False) -> asyncssh.SSHClientConnection:
        client = _Client()
        extra = {"server_host_key_algs": "default"} if any_key_type else {}
        where = f"{t.user}@{t.host}:{t.port}"
        try:
            conn, _ = await asyncio.wait_for(
                asyncssh.create_connection(
                    lambda: client,
                    t.host,
                    t.port,
                    username=t.user,
                    client_keys=[self._client_key()],
                    known_hosts=(trusted, [], []),
                    agent_path=None,
                    password=None,
                    kbdint_auth=False,
                    preferred_auth="publickey",
                    config=[],  # the operator's ~/.ssh/config must not change where we connect
                    x509_trusted_certs=None,
                    keepalive_interval=self.keepalive_interval,
                    keepalive_count_max=3,
                    **extra,
                ),
                timeout=self.connect_timeout,
            )
            return conn
        except asyncssh.HostKeyNotVerifiable:
            if client.presented is not None:
                raise _Presented(client.presented) from None
            raise SSHUnreachable(f"SSH to {where}: the host key could not be verified") from None
        except (asyncssh.KeyExchangeFailed, asyncssh.ConnectionLost, ConnectionResetError) as exc:
            # OpenSSH drops the connection when no host key type is in common: with a pinned key
            # that may mean the host's key changed type. The caller probes to find out.
            if trusted and not any_key_type:
                raise _NoCommonHostKeyType() from None
            raise SSHUnreachable(f"SSH to {where}: cannot connect: {_describe(exc)}") from None
        except TimeoutError:
            raise SSHUnreachable(
                f"SSH to {where}: no connection within {self.connect_timeout:g}s (connect timeout)") from None
        except asyncssh.PermissionDenied:
            raise SSHUnreachable(
                f"SSH to {where}: the server refused our key (permission denied)"
                " - is the public key in the host's authorized_keys?"
            ) from None
        except HostKeyError:
            raise
        except (OSError, socket.gaierror, asyncssh.Error) as exc:
            raise SSHUnreachable(f"SSH to {where}: cannot connect: {_describe(exc)}") from None

    async def close(self) -> None:
        conns = list(self._conns.values())
        self._conns.clear()
        for c in conns:
            c.close()
        for c in conns:
            try:
                await asyncio.wait_for(c.wait_closed(), 5)
            except Exception:  # noqa: BLE001 - best effort at shutdown: the connection is gone either way
                pass

    async def __aenter__(self) -> SSHPool:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()


class _NoCommonHostKeyType(Exception):
    pass


class _Presented(Exception):
    def __init__(self, key: asyncssh.SSHKey):
        self.key = key


def _is_closed(conn: asyncssh.SSHClientConnection) -> bool:
    return conn.is_closed()


def _describe(exc: BaseException) -> str:
    if isinstance(exc, asyncssh.Error):
        return exc.reason or type(exc).__name__
    return str(exc) or type(exc).__name__
