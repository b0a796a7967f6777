"""The whole first run, headless, as a user meets it: `zdd-tui sandbox up --hosts 0` (an empty
account: no droplets, no load balancer, no registry), `zdd-tui setup --yes --accept-new-host-keys`
creates everything from nothing through the API while the new objects go through DigitalOcean's
intermediate states (droplets without addresses, a load balancer `new` with `ip: ""`), then a first
deploy puts the service on the new hosts and a second one rolls a new version under load with no
failed request. Every step is a real `zdd-tui` process."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from rollout.childproc import ready_line
from rollout.loadgen import LoadProcess

pytestmark = pytest.mark.slow

CREATE_DELAY = "1.5"  # long enough for setup's polls to see every object "new" first
RATE = 250
MIN_RATE = RATE / 4  # the load must have run all along (a busy machine sends fewer)



@pytest.fixture
def empty_sandbox(tmp_path):
    state = tmp_path / "sandbox"
    state.mkdir(mode=0o700)  # the sandbox takes only a private directory
    proc = subprocess.Popen(
        [sys.executable, "-m", "zdd_tui", "sandbox", "up", "--json", "--state-dir", str(state), "--hosts", "0",
         "--create-delay", CREATE_DELAY, "--lb-unhealthy", "2", "--lb-healthy", "2"],
        stdout=subprocess.PIPE, stderr=open(state / "sandbox.err", "w"), text=True)
    try:
        info = json.loads(ready_line(proc, 90))
        info["state"] = state
        yield info
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


async def zdd(*args: str, env: dict, timeout: float = 240) -> tuple[int, str, str]:
    p = await asyncio.create_subprocess_exec(sys.executable, "-m", "zdd_tui", *args, env=env,
                                             stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                                             stdin=asyncio.subprocess.DEVNULL)
    try:
        out, err = await asyncio.wait_for(p.communicate(), timeout)
    except TimeoutError:
        p.kill()
        await p.wait()
        raise
    return p.returncode, out.decode(), err.decode()


def account(state: Path) -> dict:
    """The sandbox's account as it stands (its state file; the API's own view)."""
    return json.loads((state / "api-state.json").read_text())


async def fleet(config: str) -> dict[str, str | None]:
    """What each host runs, asked of the hosts through the project layer."""
    from zdd_tui.config import load_config
    from zdd_tui.project import Project

    async with await Project.open(load_config(config)) as project:
        st = await project.status()
    assert not st.errors, st.errors
    return {d["name"]: (d.get("host") or {}).get("tag") for d in st.to_dict()["droplets"]}


async def test_first_run_from_an_empty_account_to_a_zero_downtime_deploy(empty_sandbox):
    info, state = empty_sandbox, empty_sandbox["state"]
    config = info["config"]
    before = account(state)
    assert info["hosts"] == [] and info["lb_url"] is None
    assert before["droplets"] == {} and before["load_balancers"] == {} and before["registry"] is None
    doc = yaml.safe_load(Path(config).read_text())  # noqa: ASYNC240 - a local file read in a check
    names = doc["droplets"]["names"]
    assert names == ["app-1", "app-2"]  # what setup is to create
    ok = [t["tag"] for t in info["tags"] if t["behaviour"] == "ok" and t["tag"].startswith("sha-")]
    v1, v2 = ok[-1], ok[0]

    env = {k: v for k, v in os.environ.items() if k != "DIGITALOCEAN_TOKEN"}
    import asyncssh

    env["ZDD_SSH_PRIVATE_KEY"] = asyncssh.generate_private_key("ssh-ed25519").export_private_key("openssh").decode()
    rc, out, err = await zdd("setup", "--config", config, "--yes", "--accept-new-host-keys", "--json", env=env)
    assert rc == 0, (out[-3000:], err)
    events = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert events[-1]["steps"] == {"token": "exists", "ssh-key": "created", "droplets": "created",
                                   "load-balancer": "created", "registry": "created",
                                   "bootstrap": "not-applicable"}
    said = [e["message"] for e in events if e["kind"] == "step-progress"]
    # Setup waited through the intermediate states, and said so.
    assert any("waiting for app-1 (new)" in m for m in said), said
    assert any("(no IP yet)" in m and " new" in m for m in said), said

    after = account(state)
    droplets = {d["name"]: d for d in after["droplets"].values()}
    assert sorted(droplets) == names
    assert all(d["status"] == "active" and d["networks"]["v4"] for d in droplets.values())
    [lb] = after["load_balancers"].values()
    assert lb["status"] == "active" and lb["ip"] and lb["tag"] == doc["droplets"]["tag"]
    assert after["registry"]["name"] == doc["registry"]["name"]
    running = json.loads((state / "sandbox.json").read_text())
    assert running["lb_url"] and sorted(h["name"] for h in running["hosts"]) == names
    assert await fleet(config) == dict.fromkeys(names)  # new hosts run nothing yet

    # First deploy: nothing served before, so no load to protect yet.
    rc, out, err = await zdd("deploy", "--config", config, "--tag", v1, "--yes", env=env)
    assert rc == 0, (out[-3000:], err)
    assert await fleet(config) == dict.fromkeys(names, v1)

    # And the rolling deploy the project is for: under load, not one failed request.
    load = await LoadProcess(running["lb_url"] + "/", RATE, max_seconds=300).start()
    try:
        rc, out, err = await zdd("deploy", "--config", config, "--tag", v2, "--yes", env=env)
    finally:
        res = await load.stop()
    assert rc == 0, (out[-3000:], err)
    assert f"OK: {v2} runs on 2 host(s)" in out
    assert await fleet(config) == dict.fromkeys(names, v2)
    assert res.rate >= MIN_RATE, res.summary()
    assert res.failed == 0, (res.summary(), res.first_failures)
    assert res.versions.get(v2, 0) > 0
