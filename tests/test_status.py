"""`zdd-tui status` on a local-swap fleet: per host the proxy's health, its active slot, the tag it
serves and the versions kept, in text and JSON, read from the hosts (one call each per host, no
extra API request)."""

from __future__ import annotations

import argparse
import json

from rollout.fakes import FakeClock, World, fake_project
from ui.swapfake import BEFORE, NEW, OLD, give_swap, mixed_fleet

from zdd_tui.project.status import gather, render_text


def _project():
    world = World(FakeClock(), start_tag=OLD)
    return world, fake_project(world)


async def test_status_gathers_each_proxy_once_and_no_more_api_requests():
    world, plain = _project()
    before = await gather(plain)
    assert all(h.swap is None for h in before.hosts.values())  # runtimes without a local-swap side
    plain_requests = plain.requests_made

    world, project = _project()
    sides = mixed_fleet()
    give_swap(world.hosts, sides)
    st = await gather(project)
    assert project.requests_made == plain_requests  # the proxies are asked on the hosts only
    assert all(s.calls == {"proxy": 1, "slot_containers": 1} for s in sides.values())

    one, two, three = (st.hosts[n] for n in ("app-1", "app-2", "app-3"))
    assert one.swap is not None and two.swap is not None and three.swap is not None
    assert (one.strategy, one.tag, one.swap.active_slot, one.swap.retained_tags) == ("local-swap", NEW, "b",
                                                                                     [OLD, BEFORE])
    assert (two.tag, two.swap.active_slot, two.swap.proxy.healthy, two.swap.retained_tags) == (OLD, "a", False, [])
    # No proxy yet: its single container serves, as with lb-drain.
    assert (three.strategy, three.tag, three.swap.installed) == ("lb-drain", OLD, False)


async def test_status_json_and_text_for_a_local_swap_fleet(monkeypatch, capsys, tmp_path):
    world, project = _project()
    give_swap(world.hosts, mixed_fleet())

    from zdd_tui import config as config_module
    from zdd_tui.commands import status as status_command
    from zdd_tui.project import Project

    async def opened(config, context=None):
        return project

    monkeypatch.setattr(config_module, "load_config", lambda path: project.config)
    monkeypatch.setattr(Project, "open", staticmethod(opened))
    args = argparse.Namespace(config=str(tmp_path / "zdd.yaml"), context=None, no_hosts=False, json=True)
    code = await status_command.run(args)
    doc = json.loads(capsys.readouterr().out)
    assert code == 0, doc["errors"]
    hosts = {d["name"]: d["host"] for d in doc["droplets"]}
    one = hosts["app-1"]
    assert one["tag"] == NEW and one["strategy"] == "local-swap"
    swap = one["swap"]
    assert (swap["proxy_healthy"], swap["active_slot"], swap["serving_tag"], swap["retained_tags"]) == (
        True, "b", NEW, [OLD, BEFORE])
    assert {(c["slot"], c["tag"], c["state"], c["port"]) for c in swap["slots"]} == {
        ("b", NEW, "running", 8082), ("a", OLD, "exited", 8081), ("a", BEFORE, "exited", 8081)}
    two = hosts["app-2"]["swap"]
    assert two["proxy_healthy"] is False and two["proxy"]["detail"] == "container exited (137)"
    assert hosts["app-3"]["swap"]["proxy"]["installed"] is False and hosts["app-3"]["strategy"] == "lb-drain"

    text = render_text(await gather(project))
    lines = {line.split()[0]: line for line in text.splitlines() if line.startswith("  app-")}
    assert f"local-swap: proxy healthy; slot b serves {NEW}; kept {OLD}, {BEFORE}; health ok" in lines["app-1"]
    assert ("local-swap: proxy UNHEALTHY (not running: container exited (137)); slot a serves "
            f"{OLD}; kept none") in lines["app-2"]
    assert f"runs {OLD} running; health ok" in lines["app-3"]
