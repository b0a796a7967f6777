"""The whole first run through the console (Pilot), on an empty sandbox account: the dashboard
of an account with nothing in it, `s` then `a` (each step confirmed in its dialog) creates the
droplets, the load balancer and the registry while they pass through DigitalOcean's intermediate
states, `d` puts the service on the new hosts, and after a new version is pushed `d` rolls it out
under load with no failed request. The fleet itself (what each host runs, the account's objects)
is checked, not only the screen. The sandbox runs in its own process, as `zdd-tui --sandbox` runs
it (its LB proxies the load without sharing the console's event loop)."""

from __future__ import annotations

import json

import httpx
import pytest
from rollout.loadgen import LoadProcess

from zdd_tui.rollout.events import OutcomeStatus
from zdd_tui.ui.app import ZddApp
from zdd_tui.ui.screens.confirm import ConfirmScreen
from zdd_tui.ui.screens.dashboard import DashboardScreen
from zdd_tui.ui.screens.setup import SetupScreen

from .conftest import sandbox_config, until
from .test_flows_sandbox import run_to_outcome
from .test_setup_screen import _log_text

pytestmark = pytest.mark.slow
SIZE = (140, 44)
RATE = 250
MIN_RATE = RATE / 4  # the load must have run all along (a busy machine sends fewer)


@pytest.fixture
def empty_sandbox(tmp_path):
    from zdd_tui.ui.sandbox_proc import start_sandbox

    (tmp_path / "sandbox").mkdir(mode=0o700)  # the sandbox takes only a private directory
    sp = start_sandbox(0, tmp_path / "sandbox",
                       ("--create-delay", "1", "--lb-unhealthy", "2", "--lb-healthy", "2"))
    try:
        yield sp
    finally:
        sp.stop()


def account(sp) -> dict:
    """The sandbox's account as it stands (its state file, rewritten on every change)."""
    return json.loads((sp.state_dir / "api-state.json").read_text())


def lb_url(sp) -> str | None:
    return json.loads((sp.state_dir / "sandbox.json").read_text()).get("lb_url")


async def fleet_tags(project) -> dict[str, str | None]:
    """What each host serves, asked of the hosts: behind its proxy (local-swap), or its one container."""
    out = {}
    for d in await project.droplets():
        hs = await project.host_status(d)
        c = hs.swap.serving if hs.swap is not None and hs.swap.installed else hs.container
        out[d.name] = c.tag if c is not None and c.state == "running" else None
    return out


async def push_version(sp, tag: str, version: str) -> None:
    """What `build --push` does to a real registry: a new sha tag, and `latest` on it."""
    token = (sp.state_dir / "token").read_text().strip()
    async with httpx.AsyncClient(base_url=sp.info["api_url"], headers={"Authorization": f"Bearer {token}"}) as http:
        r = await http.post("/sandbox/registry/app/tags", json={"tag": tag, "extra": {"version": version}})
        digest = r.raise_for_status().json()["tag"]["manifest_digest"]
        r = await http.post("/sandbox/registry/app/tags",
                            json={"tag": "latest", "manifest_digest": digest, "extra": {"version": version}})
        r.raise_for_status()


async def test_first_run_in_the_console_from_an_empty_account(empty_sandbox, memkeyring):
    from zdd_tui.project import Project
    from zdd_tui.ui.source import FleetSource

    sandbox = empty_sandbox
    before = account(sandbox)
    assert before["droplets"] == {} and before["load_balancers"] == {} and before["registry"] is None
    config = sandbox_config(sandbox)
    source = FleetSource(await Project.open(config), label="sandbox (test)")
    project = source.project
    try:
        app = ZddApp(source)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause(1.0)
            assert isinstance(app.screen, DashboardScreen)  # an empty account is a dashboard too

            await pilot.press("s")
            await until(pilot, lambda: isinstance(app.screen, SetupScreen), 10, "the setup screen")
            setup = app.screen
            await pilot.press("a")
            confirmed: list = []

            def finished() -> bool:
                return "setup finished" in _log_text(setup) or "✖ " in _log_text(setup)

            def new_question() -> bool:
                return isinstance(app.screen, ConfirmScreen) and app.screen not in confirmed

            while not finished():
                await until(pilot, lambda: finished() or new_question(), 120, "setup's next question or its end")
                if new_question():
                    confirmed.append(app.screen)
                    await pilot.press("y")
            log = _log_text(setup)
            assert "setup finished" in log and "✖" not in log, log
            # The waits showed the intermediate states, and nothing crashed on them.
            assert "waiting for app-1 (new)" in log and "(no IP yet)" in log, log
            # One question per step that creates something: SSH key, droplets, load balancer, registry.
            assert [c._title for c in confirmed] == ["Setup: SSH key?", "Setup: Droplets?", "Setup: Load balancer?",
                                                     "Setup: Container registry?"]

            after = account(sandbox)
            droplets = list(after["droplets"].values())
            assert sorted(d["name"] for d in droplets) == list(config.droplets.names)
            assert all(d["status"] == "active" and d["networks"]["v4"] for d in droplets)
            [lb] = after["load_balancers"].values()
            assert lb["status"] == "active" and lb["ip"] and lb_url(sandbox)
            assert after["registry"]["name"] == config.registry.name
            # A local host for each new droplet, running nothing yet.
            assert await fleet_tags(project) == dict.fromkeys(config.droplets.names)

            await pilot.press("escape")
            await until(pilot, lambda: isinstance(app.screen, DashboardScreen), 10, "the dashboard")
            await until(pilot, lambda: len(app.fleet.droplets) == 2 and app.fleet.lb is not None
                        and app.fleet.tags, 30, "the dashboard to show the new fleet")

            # First deploy: the newest version onto hosts that run nothing (no traffic to keep).
            await pilot.press("d")
            await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), 20, "the deploy confirmation")
            await pilot.press("y")
            screen = await run_to_outcome(pilot, app)
            assert screen.outcome.status is OutcomeStatus.SUCCESS, screen.outcome
            first = set((await fleet_tags(project)).values())
            assert len(first) == 1 and None not in first

            # A new version is pushed; `d` rolls it out under load, without one failed request.
            await pilot.press("escape")
            await until(pilot, lambda: isinstance(app.screen, DashboardScreen), 10, "the dashboard")
            await push_version(sandbox, "sha-f1257a0", "first-run-2")
            await pilot.press("f5")
            await until(pilot, lambda: any(t.tag == "sha-f1257a0" for t in app.fleet.tags), 20, "the new tag")
            load = await LoadProcess(lb_url(sandbox) + "/", RATE, max_seconds=300).start()
            try:
                await pilot.press("d")
                await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), 20, "the deploy confirmation")
                await pilot.press("y")
                screen = await run_to_outcome(pilot, app)
            finally:
                res = await load.stop()
            assert screen.outcome.status is OutcomeStatus.SUCCESS, screen.outcome
            assert await fleet_tags(project) == dict.fromkeys(config.droplets.names, "sha-f1257a0")
            assert res.rate >= MIN_RATE, res.summary()
            assert res.failed == 0, (res.summary(), res.first_failures)
            assert res.versions.get("first-run-2", 0) > 0
    finally:
        await source.close()
