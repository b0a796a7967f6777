"""Reads never import pydo: a fresh interpreter reads from the sandbox API without pydo, azure-core
or aiohttp in sys.modules (they cost the console ~80 MB), and its first write imports pydo and works."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import zdd_tui

REPO = Path(zdd_tui.__file__).resolve().parents[1]

CHILD = r"""
import asyncio, json, os, sys

def heavy():
    return sorted({m.split(".")[0] for m in sys.modules if m.split(".")[0] in ("pydo", "azure", "aiohttp")})

from zdd_tui.cloud.client import DOClient
out = {"after_import": heavy()}

async def main():
    async with DOClient(os.environ["ZDD_TEST_API"], os.environ["ZDD_TEST_TOKEN"]) as do:
        out["droplets"] = [d.name for d in await do.list_droplets("zdd-app")]
        out["account"] = (await do.account()).status
        out["registry"] = (await do.get_registry()).name
        out["tags"] = [t.tag for t in await do.list_tags("zdd-registry", "app")]
        out["sizes"] = len(await do.sizes())
        out["reads_made"] = do.requests_made
        out["after_reads"] = heavy()
        await do.create_tag("web")
        out["after_write"] = heavy()
        out["requests_made"] = do.requests_made

asyncio.run(main())
print(json.dumps(out))
"""


async def test_reads_do_not_import_pydo_and_a_write_does(sandbox, token):
    sandbox.state.create_droplet("app-1", tags=["zdd-app"], public_ipv4="127.0.2.1")
    sandbox.state.create_registry("zdd-registry")
    sandbox.state.put_registry_tag("app", "sha-aaaaaaa")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        "ZDD_TEST_API": sandbox.url,
        "ZDD_TEST_TOKEN": token,
    }
    # Asynchronously: the sandbox answers from this test's event loop meanwhile.
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CHILD, cwd=REPO, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(child.communicate(), 60)
    assert child.returncode == 0, stderr.decode()[-3000:]
    out = json.loads(stdout)

    assert out["after_import"] == [] and out["after_reads"] == []
    assert out["droplets"] == ["app-1"] and out["account"] == "active"
    assert out["registry"] == "zdd-registry" and out["tags"] == ["sha-aaaaaaa"] and out["sizes"] > 0
    assert "pydo" in out["after_write"] and "azure" in out["after_write"]
    assert out["requests_made"] == out["reads_made"] + 1  # both transports count
    assert [(m, p) for m, p, _q, _s in sandbox.request_log if m != "GET"] == [("POST", "/v2/tags")]
    assert [p for m, p, _q, _s in sandbox.request_log if p.startswith("/v2/registries")] == [
        "/v2/registries", "/v2/registries/zdd-registry/repositories/app/tags",
    ]
