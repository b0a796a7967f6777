"""local-swap in the sandbox, under load through the LB, through the real CLI: a deploy (adopting
hosts that have no proxy yet), a version that never gets healthy (halted, nothing switched), a
rollback to the retained version (no pull), and the `plain` version (no admin port at all), each
counting every failed request (0 expected).

"""

from __future__ import annotations

import json

import pytest
import yaml
from sandboxkit import cli, small_sandbox

from zdd_tui.rollout.interfaces import SwapHost

from .loadgen import LoadProcess as Load

pytestmark = pytest.mark.slow

RATE = 250
MIN_RATE = RATE / 4
@pytest.fixture
async def sandbox(tmp_path):
    async with small_sandbox(tmp_path) as sb:
        yield sb


async def serving(config) -> dict[str, str | None]:
    """host -> the tag on the slot its proxy sends traffic to, asked of the hosts themselves."""
    from zdd_tui.project import Project

    async with await Project.open(config) as project:
        out: dict[str, str | None] = {}
        for name, rt in (await project.host_runtimes()).items():
            assert isinstance(rt, SwapHost)
            st = await rt.proxy()
            running = [c for c in await rt.slot_containers() if c.slot == st.active_slot and c.state == "running"]
            out[name] = running[0].tag if st.installed and running else None
        return out


async def under_load(url: str, *args: str) -> tuple[int, str, str]:
    load = await Load(url + "/", RATE, max_seconds=300).start()
    try:
        rc, out, err = await cli(*args)
    finally:
        res = await load.stop()
    assert res.rate >= MIN_RATE, res.summary()
    assert res.failed == 0, res.summary()
    return rc, out, err


async def test_deploy_halt_and_rollback_with_local_swap_under_load(sandbox, tmp_path):
    from zdd_tui.config import load_config

    doc = yaml.safe_load(sandbox.config_path.read_text())
    doc.setdefault("deploy", {}).update(start_timeout_seconds=10, strategy="local-swap")
    path = tmp_path / "zdd.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    config = load_config(path)
    cfg = ("--config", str(path))
    tags = {t["tag"]: t["behaviour"] for t in sandbox.info["tags"]}
    v1 = sandbox.info["hosts"][0]["tag"]
    v2 = next(t for t, b in tags.items() if b == "ok" and t.startswith("sha-") and t != v1)
    bad = next(t for t, b in tags.items() if b == "unhealthy")
    url = sandbox.info["lb_url"]

    rc, _, err = await under_load(url, "deploy", "--tag", v2, "--yes", *cfg)
    assert rc == 0, err
    assert await serving(config) == {"app-1": v2, "app-2": v2}

    rc, _, err = await under_load(url, "deploy", "--tag", bad, "--yes", *cfg)
    assert rc == 3, err  # halted; the failed host untouched
    assert await serving(config) == {"app-1": v2, "app-2": v2}

    rc, out, err = await under_load(url, "rollback", v1, "--yes", "--json", "--strategy", "local-swap", *cfg)
    assert rc == 0, err
    assert await serving(config) == {"app-1": v1, "app-2": v1}
    # Every host kept v1 (stopped) when v2 replaced it: nothing is fetched from the registry.
    logs = [e for e in map(json.loads, out.splitlines()) if e.get("kind") == "log"]
    kept = {e["host"] for e in logs if "present on the host, not pulled" in e["line"]}
    assert kept == {"app-1", "app-2"}, [e["line"] for e in logs]
    assert not [e for e in logs if e["line"].startswith("pulled ")]

    # The contract is $PORT and the health path: a version with no admin listener at all.
    plain = next(t for t, b in tags.items() if b == "plain")
    rc, _, err = await under_load(url, "deploy", "--tag", plain, "--yes", *cfg)
    assert rc == 0, err
    assert await serving(config) == {"app-1": plain, "app-2": plain}
