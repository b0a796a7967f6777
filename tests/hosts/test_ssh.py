"""SSH against a real OpenSSH server on loopback: auth, pinning, quoting, streaming, forwards, drops."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time

import aiohttp
import aiohttp.web
import asyncssh
import pytest

from zdd_tui.config import Config, SSHConfig
from zdd_tui.hosts.forward import Forwards, NoAnswer
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

    async with SSHPool(key, known_hosts=kh, accept_new=lambda h, p, fp: fp == s1.host_fingerprint,
                       port=s1.port) as pool:
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
    assert not os.path.exists("/tmp/zdd-pwned")  # noqa: ASYNC240 - a local stat in a check, loop idle


async def test_stdin_reaches_the_command(sshd, kh):
    data = "secret-ish: not on argv\nsecond line ✓\n"
    async with SSHPool(sshd.client_key_text, known_hosts=kh, accept_new=True, port=sshd.port) as pool:
        res = await HostShell(pool, "127.0.0.1").run(["cat"], input=data)
        assert res.stdout == data


async def test_output_streams_line_by_line_in_order(sshd, kh):
    # After each line the command waits for a gate file that only our callback for that line
    # creates: without line-by-line streaming this would hang and time out. The gates also fix
    # the order across stdout and stderr, so the order seen must be exactly the order written.
    gates = sshd.dir / "gates"
    gates.mkdir()
    plan = [("stdout", "out1"), ("stderr", "err1"), ("stdout", "out2 ✓"), ("stderr", "err2"), ("stdout", "")]
    script = "".join(
        f'printf "%s\\n" "{text}"{" >&2" if stream == "stderr" else ""}; '
        f'while [ ! -e "$1/{i}" ]; do sleep 0.02; done; '
        for i, (stream, text) in enumerate(plan)
    ) + "echo last"
    seen: list[tuple[str, str]] = []

    def on_line(stream, line):
        (gates / str(len(seen))).touch()
        seen.append((stream, line))

    async with SSHPool(sshd.client_key_text, known_hosts=kh, accept_new=True, port=sshd.port) as pool:
        res = await HostShell(pool, "127.0.0.1").run(["sh", "-c", script, "t", str(gates)], on_line=on_line, timeout=30)
    assert seen == [*plan, ("stdout", "last")]
    assert res.stdout == "out1\nout2 ✓\n\nlast\n" and res.stderr == "err1\nerr2\n"


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


async def test_connection_refused_is_unreachable(kh, quiet_ports):
    (port,) = quiet_ports(1)
    key = asyncssh.generate_private_key("ssh-ed25519").export_private_key("openssh").decode()
    async with SSHPool(key, known_hosts=kh, port=port, connect_timeout=2) as pool:
        with pytest.raises(SSHUnreachable, match="cannot connect"):
            await HostShell(pool, "127.0.0.1").run(["true"])


async def test_requests_to_a_hosts_loopback_go_over_ssh_channels_with_no_listener_here(sshd, kh):
    during = []

    async def handler(request):
        # While a request is in flight through the SSH channel, this process listens on nothing new.
        during.append(_our_listeners())
        return aiohttp.web.json_response({"path": request.path, "probe": request.headers.get("X-Zdd-Probe"),
                                          "remote": request.remote})

    app = aiohttp.web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = aiohttp.web.AppRunner(app)
    await runner.setup()
    site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    try:
        async with SSHPool(sshd.client_key_text, known_hosts=kh, accept_new=True, port=sshd.port) as pool:
            shell = HostShell(pool, "127.0.0.1")
            await shell.connection()
            before = _our_listeners()  # the stand-in service's own listener, and nothing of ours
            fw = Forwards(shell)
            for i in range(3):
                ans = await fw.request("POST", port, f"/admin/drain/{i}", headers={"X-Zdd-Probe": "zdd-tui"})
                assert ans.status == 200
                assert ans.json() == {"path": f"/admin/drain/{i}", "probe": "zdd-tui", "remote": "127.0.0.1"}
            assert during and all(seen == before for seen in during)
            assert _our_listeners() == before
            # Nothing listening there: a clear NoAnswer, not an SSH failure, and still no listener.
            fw2 = Forwards(shell)
            await runner.cleanup()
            with pytest.raises(NoAnswer):
                await fw2.request("GET", port, "/admin/stats")
            assert _our_listeners() == before - {("tcp", f"127.0.0.1:{port}")}
            assert (await shell.run(["true"])).exit_status == 0  # the SSH connection is still fine
    finally:
        await runner.cleanup()


async def test_a_port_that_accepts_but_never_answers_times_out_and_frees_the_channel(sshd, kh):
    held = []
    eof = asyncio.Event()

    async def silent(reader, writer):
        held.append(writer)
        await reader.read()  # nothing sent back; returns when our side closes the channel
        eof.set()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with SSHPool(sshd.client_key_text, known_hosts=kh, accept_new=True, port=sshd.port) as pool:
            fw = Forwards(HostShell(pool, "127.0.0.1"))
            started = time.monotonic()
            with pytest.raises(TimeoutError):
                await fw.request("GET", port, "/admin/stats", timeout=0.5)
            assert time.monotonic() - started < 5
            # The channel was closed: the host side sees end of file.
            await asyncio.wait_for(eof.wait(), 5)
    finally:
        server.close()
        for w in held:
            w.close()


def _our_listeners() -> set[tuple[str, str]]:
    """Listening sockets (TCP v4/v6, Unix) of this process: its fds' socket inodes matched against
    the kernel's socket tables."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    out = set()
    for path, v6 in (("/proc/net/tcp", False), ("/proc/net/tcp6", True)):
        try:
            lines = open(path).read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if f[3] != "0A" or f[9] not in inodes:
                continue
            addr, p = f[1].split(":")
            raw = bytes.fromhex(addr)
            if v6:
                # /proc stores each 32-bit word in host (little-endian) order.
                raw = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
                out.add(("tcp", f"[{socket.inet_ntop(socket.AF_INET6, raw)}]:{int(p, 16)}"))
            else:
                out.add(("tcp", f"{socket.inet_ntoa(raw[::-1])}:{int(p, 16)}"))
    for line in open("/proc/net/unix").read().splitlines()[1:]:
        f = line.split()
        # Flags 00010000 is __SO_ACCEPTON: a listening Unix socket.
        if f[3] == "00010000" and f[6] in inodes:
            out.add(("unix", f[7] if len(f) > 7 else "(unnamed)"))
    return out


async def test_host_now_offering_another_key_type_is_a_changed_key(sshd_factory, kh):
    s1 = sshd_factory()
    key = s1.client_key_text
    async with SSHPool(key, known_hosts=kh, accept_new=True, port=s1.port) as pool:
        await HostShell(pool, "127.0.0.1").run(["true"])
    port = s1.port
    s1.stop()
    # Only an ECDSA host key now: no algorithm in common with the pinned ed25519 key.
    ecdsa = asyncssh.generate_private_key("ecdsa-sha2-nistp256")
    s2 = sshd_factory(port=port, client_key=s1.client_key, host_key=ecdsa)
    async with SSHPool(key, known_hosts=kh, accept_new=True, port=port) as pool:
        with pytest.raises(HostKeyChanged) as ei:
            await HostShell(pool, "127.0.0.1").run(["true"])
    assert ei.value.old_fingerprints == [s1.host_fingerprint]
    assert ei.value.new_fingerprint == s2.host_fingerprint
