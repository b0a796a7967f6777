"""SSH against a real OpenSSH server on loopback: auth, pinning, quoting, streaming, forwards, drops."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from pathlib import Path

import aiohttp
import aiohttp.web
import asyncssh
import pytest

from zdd_tui.config import Config, SSHConfig
from zdd_tui.hosts.forward import Forwards
from zdd_tui.hosts.known_hosts import HostKeyChanged, HostKeyUnknown, KnownHosts
from zdd_tui.hosts.runner import CommandFailed, HostShell
from zdd_tui.hosts.ssh import SSHPool, SSHUnreachable
from zdd_tui.rollout.interfaces import HostUnreachable, RuntimeFailure


def _cfg(port: int) -> Config:
    return Config(ssh=SSHConfig(user="root", port=port, connect_timeout_seconds=5))


@pytest.fixture
def kh(tmp_path) -> KnownHosts:
    return KnownHosts(tmp_path / "state" / "known_hosts")


async def test_key_auth_from_credential_store(sshd, kh, monkeypatch):
    # The key reaches the pool only through the credential store (env wins over the keyring).
    monkeypatch.setenv("ZDD_SSH_PRIVATE_KEY", sshd.client_key_text)
    async with SSHPool.from_config(_cfg(sshd.port), known_hosts=kh, accept_new=True) as pool:
        shell = HostShell(pool, "127.0.0.1")
        res = await shell.run(["id", "-u"])
        assert res.stdout.strip() == "0"
        # The same connection is reused for the next command.
        c1 = await shell.connection()
        await shell.run(["true"])
        assert (await shell.connection()) is c1


async def test_wrong_key_is_a_clear_error(sshd, kh):
    other = asyncssh.generate_private_key("ssh-ed25519").export_private_key("openssh").decode()
    async with SSHPool(other, known_hosts=kh, accept_new=True, port=sshd.port) as pool:
        with pytest.raises(SSHUnreachable, match="refused our key"):
            await HostShell(pool, "127.0.0.1").run(["true"])


async def test_first_contact_needs_permission_then_changed_key_refused(sshd_factory, kh):
    s1 = sshd_factory()
    key = s1.client_key_text

    # Not allowed: refused, nothing pinned, the message shows the fingerprint.
    async with SSHPool(key, known_hosts=kh, accept_new=False, port=s1.port) as pool:
        with pytest.raises(HostKeyUnknown) as ei:
            await HostShell(pool, "127.0.0.1").run(["true"])
        assert s1.host_fingerprint in str(ei.value)
        assert isinstance(ei.value, HostUnreachable)
    assert kh.keys_for("127.0.0.1", s1.port) == []

    # The console's question: the callback sees the SHA256 fingerprint; a "no" pins nothing.
    asked = []

    async def say_no(host, port, fp):
        asked.append((host, port, fp))
        return False

    async with SSHPool(key, known_hosts=kh, accept_new=say_no, port=s1.port) as pool:
        with pytest.raises(HostKeyUnknown):
            await HostShell(pool, "127.0.0.1").run(["true"])
    assert asked == [("127.0.0.1", s1.port, s1.host_fingerprint)]
    assert kh.keys_for("127.0.0.1", s1.port) == []

    async with SSHPool(key, known_hosts=kh, accept_new=lambda h, p, fp: fp == s1.host_fingerprint, port=s1.port) as pool:
        assert (await HostShell(pool, "127.0.0.1").run(["echo", "ok"])).stdout == "ok\n"
    pinned = kh.keys_for("127.0.0.1", s1.port)
    assert [k.get_fingerprint("sha256") for k in pinned] == [s1.host_fingerprint]
    assert oct(kh.path.parent.stat().st_mode & 0o777) == "0o700"

    # Pinned: later connections need no permission.
    async with SSHPool(key, known_hosts=kh, accept_new=False, port=s1.port) as pool:
        assert (await HostShell(pool, "127.0.0.1").run(["echo", "again"])).stdout == "again\n"

    # The host comes back with another key on the same address: refused, even with accept_new.
    port = s1.port
    s1.stop()
    s2 = sshd_factory(port=port, client_key=s1.client_key)
    async with SSHPool(key, known_hosts=kh, accept_new=True, port=port) as pool:
        with pytest.raises(HostKeyChanged) as ei:
            await HostShell(pool, "127.0.0.1").run(["true"])
    msg = str(ei.value)
    assert f"[127.0.0.1]:{port}" in msg
    assert s1.host_fingerprint in msg and s2.host_fingerprint in msg
    assert str(kh.path) in msg and "hint:" in msg
    # The pin is unchanged.
    assert [k.get_fingerprint("sha256") for k in kh.keys_for("127.0.0.1", port)] == [s1.host_fingerprint]


HOSTILE = [
    "it's",
    '"double" and \\backslash\\',
    "$(touch /tmp/zdd-pwned) `id` ${HOME}",
    "a; echo injected; b && c || d | e > f",
    "line1\nline2\n",
    "ünïcødé ✓ 日本",
    "--help",
    "-n",
    "%s %d %%",
    "",
    " leading and trailing ",
    "*?[glob]~",
]


async def test_hostile_strings_round_trip(sshd, kh):
    async with SSHPool(sshd.client_key_text, known_hosts=kh, accept_new=True, port=sshd.port) as pool:
        shell = HostShell(pool, "127.0.0.1")
        for s in HOSTILE:
            res = await shell.run(["printf", "%s", s])
            assert res.stdout == s, s
        # Several in one argv keep their boundaries.
        res = await shell.run(["printf", "<%s>", *HOSTILE])
        assert res.stdout == "".join(f"<{s}>" for s in HOSTILE)
    assert not os.path.exists("/tmp/zdd-pwned")


async def test_stdin_reaches_the_command(sshd, kh):
    data = "secret-ish: not on argv\nsecond line ✓\n"
    async with SSHPool(sshd.client_key_text, known_hosts=kh, accept_new=True, port=sshd.port) as pool:
        res = await HostShell(pool, "127.0.0.1").run(["cat"], input=data)
        assert res.stdout == data


async def test_output_streams_line_by_line_in_order(sshd, kh):
    # The command blocks after its first line until a file appears; only the callback for that
    # first line creates it. Without streaming this would hang and time out.
    gate = sshd.dir / "gate"
    script = (
        'echo out1; echo err1 >&2; '
        'while [ ! -e "$1" ]; do sleep 0.02; done; '
        'echo out2; sleep 0.1; echo err2 >&2; sleep 0.1; echo out3'
    )
    seen: list[tuple[str, str]] = []

    def on_line(stream, line):
        seen.append((stream, line))
        if line == "out1":
            gate.touch()

    async with SSHPool(sshd.client_key_text, known_hosts=kh, accept_new=True, port=sshd.port) as pool:
        res = await HostShell(pool, "127.0.0.1").run(["sh", "-c", script, "t", str(gate)], on_line=on_line, timeout=10)
    assert [x for x in seen if x[0] == "stdout"] == [("stdout", "out1"), ("stdout", "out2"), ("stdout", "out3")]
    assert [x for x in seen if x[0] == "stderr"] == [("stderr", "err1"), ("stderr", "err2")]
    # Lines separated by sleeps arrive in the order they were written.
    assert [l for _, l in seen][-3:] == ["out2", "err2", "out3"]
    assert res.stdout == "out1\nout2\nout3\n"


async def test_exit_status_becomes_runtime_failure_with_stderr_tail(sshd, kh):
    async with SSHPool(sshd.client_key_text, known_hosts=kh, accept_new=True, port=sshd.port) as pool:
        shell = HostShell(pool, "127.0.0.1", label="api-1")
        with pytest.raises(CommandFailed) as ei:
            await shell.run(["sh", "-c", "echo first >&2; echo boom happened >&2; exit 7", "zdd-test"])
        e = ei.value
        assert isinstance(e, RuntimeFailure)
        assert e.exit_status == 7 and e.argv[-1] == "zdd-test"
        assert "api-1" in str(e) and "status 7" in str(e) and "boom happened" in str(e)
        res = await shell.run(["sh", "-c", "exit 3"], check=False)
        assert res.exit_status == 3


async def test_dropped_connection_mid_command_is_host_unreachable(sshd, kh):
    killed: list[int] = []

    def on_line(stream, line):
        if line == "started":
            for pid in sshd.session_pids():
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)

    async with SSHPool(sshd.client_key_text, known_hosts=kh, accept_new=True, port=sshd.port) as pool:
        shell = HostShell(pool, "127.0.0.1", label="api-2")
        with pytest.raises(HostUnreachable) as ei:
            await shell.run(["sh", "-c", "echo started; sleep 30"], on_line=on_line, timeout=20)
        assert killed
        msg = str(ei.value)
        assert "api-2" in msg and "connection lost" in msg and "unknown" in msg
        # The pool recovers on the next command with a new connection.
        assert (await shell.run(["echo", "back"])).stdout == "back\n"


async def test_connect_timeout(kh):
    # A listener that accepts but never speaks SSH: the connect timeout must fire.
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    try:
        key = asyncssh.generate_private_key("ssh-ed25519").export_private_key("openssh").decode()
        async with SSHPool(key, known_hosts=kh, port=srv.getsockname()[1], connect_timeout=0.5) as pool:
            with pytest.raises(SSHUnreachable, match="connect timeout"):
                await HostShell(pool, "127.0.0.1").run(["true"])
    finally:
        srv.close()


async def test_connection_refused_is_unreachable(kh):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    key = asyncssh.generate_private_key("ssh-ed25519").export_private_key("openssh").decode()
    async with SSHPool(key, known_hosts=kh, port=port, connect_timeout=2) as pool:
        with pytest.raises(SSHUnreachable, match="cannot connect"):
            await HostShell(pool, "127.0.0.1").run(["true"])


async def test_port_forward_to_loopback_only_server(sshd, kh):
    hits = []

    async def handler(request):
        hits.append(request.remote)
        return aiohttp.web.json_response({"path": request.path, "probe": request.headers.get("X-Zdd-Probe")})

    app = aiohttp.web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = aiohttp.web.AppRunner(app)
    await runner.setup()
    site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    try:
        async with SSHPool(sshd.client_key_text, known_hosts=kh, accept_new=True, port=sshd.port) as pool:
            fw = Forwards(HostShell(pool, "127.0.0.1"))
            ans = await fw.request("POST", port, "/admin/drain", headers={"X-Zdd-Probe": "zdd-tui"})
            assert ans.status == 200 and ans.json() == {"path": "/admin/drain", "probe": "zdd-tui"}
            lport = await fw.local_port(port)
            assert lport != port
            assert await fw.local_port(port) == lport  # the listener is reused
            # Our end listens on loopback only.
            with pytest.raises(OSError):
                socket.create_connection((_non_loopback_ip(), lport), timeout=0.5).close()
            fw.close()
    finally:
        await runner.cleanup()
    assert hits and all(h == "127.0.0.1" for h in hits)


def _non_loopback_ip() -> str:
    # Any local non-loopback address; if the machine has none, a refused loopback alias does.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("10.255.255.255", 1))
            ip = s.getsockname()[0]
        except OSError:
            ip = "127.0.0.1"
    return ip if not ip.startswith("127.") else "0.0.0.0"
