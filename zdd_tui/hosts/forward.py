"""Local port forwards to a host's own loopback (127.0.0.1:<port> on the host), over SSH.

The admin endpoints (/admin/*) listen only on the host's 127.0.0.1; probes of the service port
also go this way so they come from the host's side. Our end listens on 127.0.0.1 with an
ephemeral port only: nothing is exposed on any public address, here or there.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass

import aiohttp
import asyncssh

from zdd_tui.hosts.runner import HostShell
from zdd_tui.hosts.ssh import SSHUnreachable


@dataclass(frozen=True)
class HTTPAnswer:
    status: int
    body: str

    def json(self):
        return json.loads(self.body)


class Forwards:
    """One local listener per remote port, re-made when the SSH connection was replaced."""

    def __init__(self, shell: HostShell):
        self.shell = shell
        self._listeners: dict[int, tuple[asyncssh.SSHClientConnection, asyncssh.SSHListener]] = {}
        self._lock = asyncio.Lock()

    async def local_port(self, remote_port: int) -> int:
        """The 127.0.0.1 port here that reaches 127.0.0.1:remote_port on the host."""
        async with self._lock:
            conn = await self.shell.connection()
            held = self._listeners.get(remote_port)
            if held is not None and held[0] is conn:
                return held[1].get_port()
            if held is not None:
                held[1].close()
            try:
                listener = await conn.forward_local_port("127.0.0.1", 0, "127.0.0.1", int(remote_port))
            except (asyncssh.Error, OSError) as exc:
                raise SSHUnreachable(
                    f"{self.shell.label}: cannot forward to the host's 127.0.0.1:{remote_port} ({exc})") from None
            self._listeners[remote_port] = (conn, listener)
            return listener.get_port()

    async def request(
        self,
        method: str,
        remote_port: int,
        path: str,
        *,
        headers: dict[str, str] | None = None,
        timeout: float = 5.0,
    ) -> HTTPAnswer:
        """One HTTP request to the host's 127.0.0.1:remote_port through the forward.

        Raises aiohttp.ClientError / asyncio.TimeoutError when nothing answers there; SSH
        trouble raises HostUnreachable.
        """
        lport = await self.local_port(remote_port)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session:
            async with session.request(method, f"http://127.0.0.1:{lport}{path}", headers=headers or {}) as resp:
                return HTTPAnswer(resp.status, await resp.text())

    def close(self) -> None:
        for _, listener in self._listeners.values():
            listener.close()
        self._listeners.clear()
