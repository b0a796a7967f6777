"""`zdd-tui setup` headless, as a real process against the in-process sandbox DO API."""

from __future__ import annotations

import asyncio
import json
import os
import sys

import asyncssh
import pytest

from zdd_tui.sandbox.statedir import claim, write_token

TOKEN = "sandbox-test-token"  # the do_api fixture's token


def _write_project(tmp_path, api_url):
    state = tmp_path / "sb"
    claim(state)  # the sandbox's own state directory, as `zdd-tui sandbox up` makes it
    write_token(state, TOKEN)
    cfg = tmp_path / "zdd.yaml"
    cfg.write_text(
        f"""app: shop
context: clitest
runtime: sandbox
digitalocean:
  api_url: {api_url}
  region: nyc3
droplets:
  tag: shop-web
  names: [web-1]
  size: s-1vcpu-1gb
registry:
  name: shop-reg
  tier: basic
sandbox:
  state_dir: {state}
"""
    )
    return cfg


async def _zdd(*args, env):
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "zdd_tui", *args,
        env=env, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    return proc.returncode, out.decode(), err.decode()


def _writes(api) -> int:
    return sum(n for route, n in api.by_route.items() if route.startswith(("POST", "PUT", "DELETE")))


@pytest.mark.slow
async def test_setup_cli_confirms_then_is_idempotent(do_api, tmp_path):
    cfg = _write_project(tmp_path, do_api.url)
    key = asyncssh.generate_private_key("ssh-ed25519").export_private_key("openssh").decode()
    env = {k: v for k, v in os.environ.items() if k != "DIGITALOCEAN_TOKEN"}
    env["ZDD_SSH_PRIVATE_KEY"] = key

    # Not interactive and no --yes: refused at the first step that would create something.
    code, out, err = await _zdd("setup", "--config", str(cfg), "--json", env=env)
    assert code == 4, err
    assert "needs confirmation" in err and "--yes" in err
    assert _writes(do_api) == 0

    code, out, err = await _zdd("setup", "--config", str(cfg), "--json", "--yes", env=env)
    assert code == 0, err
    lines = [json.loads(line) for line in out.splitlines() if line.strip()]
    previews = {ev["preview"]["step"]: ev["preview"] for ev in lines if ev["kind"] == "preview"}
    assert previews["droplets"]["monthly_usd"] == 6.0  # one s-1vcpu-1gb
    assert previews["registry"]["monthly_usd"] == 5.0  # tier basic
    assert previews["bootstrap"]["applies"] is False
    assert lines[-1] == {
        "kind": "result",
        "steps": {"token": "exists", "ssh-key": "created", "droplets": "created", "load-balancer": "created",
                  "registry": "created", "bootstrap": "not-applicable"},
    }
    assert key not in out and key not in err and TOKEN not in out and TOKEN not in err

    writes = _writes(do_api)
    code, out, err = await _zdd("setup", "--config", str(cfg), "--json", env=env)  # no --yes needed now
    assert code == 0, err
    assert set(json.loads(out.splitlines()[-1])["steps"].values()) == {"exists", "not-applicable"}
    assert _writes(do_api) == writes

    code, out, err = await _zdd("setup", "--config", str(cfg), "--only", "registry", env=env)
    assert code == 0, err
    assert "nothing to create" in out and "exists: registry shop-reg" in out
