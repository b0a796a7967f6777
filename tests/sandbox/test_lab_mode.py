"""Lab-mode hooks: external droplets (name + IP, no local process) behind the sandbox LB, and the
`--lab-spec` file."""

from __future__ import annotations

import httpx
import pytest
from aiohttp import web

from zdd_tui.commands.sandbox import _lab
from zdd_tui.errors import UsageError
from zdd_tui.sandbox.hosts import AddressBlock
from zdd_tui.sandbox.supervisor import ExternalDroplet, Sandbox, SandboxOptions

from .conftest import wait_until


async def test_external_droplets_are_proxied_and_have_no_local_process(tmp_path):
    block = AddressBlock.random()
    app = web.Application()

    async def health(request):
        return web.json_response({"status": "ok"})

    async def root(request):
        return web.json_response({"api": "happy response", "id": "external"})

    app.router.add_get("/health", health)
    app.router.add_get("/", root)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, block.address(7), 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    sb = Sandbox(
        SandboxOptions(
            state_dir=tmp_path / "sb", hosts=0, service_port=port, admin_port=port + 1 if port < 65535 else port - 1,
            lb_interval=1, lb_timeout=1, lb_unhealthy=2, lb_healthy=2,
            external=[ExternalDroplet("lab-1", block.address(7))],
        )
    )
    try:
        info = await sb.start()
        assert [(h["name"], h["address"], h["tag"]) for h in info["hosts"]] == [("lab-1", block.address(7), None)]
        assert sb.pids() == [] and "lab-1" not in sb.hosts.hosts
        d = sb.api.state.droplets()[0]
        await wait_until(lambda: sb.lb.health_view().get(d["id"]) is True)
        async with httpx.AsyncClient() as http:
            r = await http.get(sb.lb.url + "/")
        assert r.status_code == 200 and r.json()["id"] == "external"
    finally:
        await sb.stop()
        await runner.cleanup()


def test_lab_spec_parsing(tmp_path, monkeypatch):
    spec = tmp_path / "lab.yaml"
    spec.write_text(
        "hosts: 0\nexternal:\n  - {name: api-1, ip: 10.9.0.11}\n"
        "registry: {url: 'http://10.9.0.1:5000', name: labreg, username: u, password_env: LAB_REG_PW}\n"
    )
    monkeypatch.setenv("LAB_REG_PW", "pw")
    o = SandboxOptions(state_dir=tmp_path)
    _lab(str(spec), o)
    assert o.hosts == 0 and o.external == [ExternalDroplet("api-1", "10.9.0.11")]
    assert o.registry_name == "labreg" and o.registry_backend.server == "10.9.0.1:5000"
    spec.write_text("external:\n  - {name: api-1}\n")
    with pytest.raises(UsageError, match=r"external\[0\] needs name and ip"):
        _lab(str(spec), SandboxOptions(state_dir=tmp_path))
    with pytest.raises(UsageError, match=r"lab\.yaml"):
        _lab(str(tmp_path / "missing" / "lab.yaml"), SandboxOptions(state_dir=tmp_path))
