"""HTTP to a host's own loopback (127.0.0.1:<port> on the host), over SSH channels.

The admin endpoints (/admin/*) listen only on the host's 127.0.0.1; probes of the service port
also go this way so they come from the host's side. Each request opens its own SSH channel
(direct-tcpip) to that port and closes it after the answer: nothing listens on our side, so no
other local user can reach a host's admin port through us, and a restarted service is never
reached through a connection to its predecessor. HTTP/1.1 over the channel is httpcore's.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from dataclasses import dataclass
from typing import Any

import asyncssh
import httpcore

from zdd_tui.hosts.runner import HostShell
from zdd_tui.hosts.ssh import SSHUnreachable

# Bigger answers are cut off: the endpoints reached here answer a few hundred bytes.
MAX_BODY = 1 << 20


@dataclass(frozen=True)
class HTTPAnswer:
    status: int
    body: str

    def json(self):
        return json.loads(self.body)


class NoAnswer(Exception):
    """Nothing answered HTTP on the host's 127.0.0.1:<port> (refused, reset, not HTTP)."""


class _Channel(httpcore.AsyncNetworkStream):
    """One SSH direct-tcpip channel as the byte stream httpcore speaks HTTP over."""

    def __init__(self, reader: asyncssh.SSHReader, writer: asyncssh.SSHWriter):
        self._reader = reader
        self._writer = writer

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        try:
            return await asyncio.wait_for(self._reader.read(max_bytes), timeout)
        except TimeoutError:
            raise httpcore.ReadTimeout("no answer in time") from None
        except (asyncssh.Error, OSError) as exc:
            raise httpcore.ReadError(str(exc) or type(exc).__name__) from None

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        try:
            self._writer.write(buffer)
            await asyncio.wait_for(self._writer.drain(), timeout)
        except TimeoutError:
            raise httpcore.WriteTimeout("the request could not be sent in time") from None
        except (asyncssh.Error, OSError) as exc:
            raise httpcore.WriteError(str(exc) or type(exc).__name__) from None

    async def aclose(self) -> None:
        self._writer.close()

    async def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                        timeout: float | None = None) -> httpcore.AsyncNetworkStream:
        raise httpcore.UnsupportedProtocol("plain HTTP only on a host's loopback")

    def get_extra_info(self, info: str) -> Any:
        return None


class Forwards:
    """HTTP requests to ports on a host's 127.0.0.1, one SSH channel each."""

    def __init__(self, shell: HostShell):
        self.shell = shell

    async def _open(self, remote_port: int, timeout: float) -> _Channel:
        conn = await self.shell.connection()  # SSH trouble here is bounded by the pool's connect timeout
        try:
            reader, writer = await asyncio.wait_for(conn.open_connection("127.0.0.1", int(remote_port)), timeout)
        except asyncssh.ChannelOpenError as exc:
            if exc.code == asyncssh.OPEN_CONNECT_FAILED:
                raise NoAnswer(exc.reason or "connection refused") from None
            raise SSHUnreachable(
                f"{self.shell.label}: cannot open a channel to the host's 127.0.0.1:{remote_port} ({exc.reason};"
                " does sshd allow TCP forwarding?)") from None
        except (asyncssh.Error, OSError, ConnectionError) as exc:
            self.shell.pool.drop(self.shell.host, self.shell.port, self.shell.user)
            raise SSHUnreachable(
                f"{self.shell.label}: SSH connection lost before a request to 127.0.0.1:{remote_port}"
                f" ({getattr(exc, 'reason', '') or exc or type(exc).__name__})") from None
        return _Channel(reader, writer)

    async def request(
        self,
        method: str,
        remote_port: int,
        path: str,
        *,
        headers: dict[str, str] | None = None,
        timeout: float = 5.0,
    ) -> HTTPAnswer:
        """One HTTP request to the host's 127.0.0.1:remote_port through a new SSH channel.

        Raises NoAnswer when nothing answers HTTP there, TimeoutError when the channel or the
        answer takes longer than `timeout` seconds; SSH trouble raises SSHUnreachable (a
        HostUnreachable).
        """
        channel = await self._open(remote_port, timeout)
        origin = httpcore.Origin(b"http", b"127.0.0.1", int(remote_port))
        http = httpcore.AsyncHTTP11Connection(origin, channel)
        try:
            return await asyncio.wait_for(self._exchange(http, method, remote_port, path, headers or {}, timeout),
                                          timeout)
        finally:
            await http.aclose()

    @staticmethod
    async def _exchange(http: httpcore.AsyncHTTP11Connection, method: str, remote_port: int, path: str,
                        headers: dict[str, str], timeout: float) -> HTTPAnswer:
        body = bytearray()
        try:
            async with http.stream(
                method, f"http://127.0.0.1:{int(remote_port)}{path}",
                headers=[*headers.items(), ("Connection", "close")],
                extensions={"timeout": {"connect": timeout, "read": timeout, "write": timeout}},
            ) as response:
                async for chunk in response.aiter_stream():
                    body += chunk
                    if len(body) >= MAX_BODY:
                        break
        except httpcore.TimeoutException:
            raise TimeoutError() from None
        except httpcore.ProtocolError as exc:
            raise NoAnswer(f"not an HTTP answer ({exc or type(exc).__name__})") from None
        except httpcore.NetworkError as exc:
            raise NoAnswer(str(exc) or type(exc).__name__) from None
        return HTTPAnswer(response.status, bytes(body[:MAX_BODY]).decode("utf-8", "replace"))

    def close(self) -> None:
        """Nothing is held between requests; kept so owners can close what they own."""
