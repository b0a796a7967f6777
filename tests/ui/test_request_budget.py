"""The console's DO API requests in 5 minutes against a 200-droplet sandbox: at most 200.

Method. The sandbox is real (its supervisor: its DO API on 127.0.0.1, its load balancer, its
registry), with 200 droplets ("external" ones: no local process each, which is what makes 200
affordable here). The console's own poll tasks (`FleetSource.tasks`, the same list
the app runs) are driven by the console's own `Poller` on a virtual clock: each sleep advances
time at once, so five minutes of schedule take seconds, while every DO API call is a real HTTP
request to the sandbox API. Two minutes of the five run on the faster rollout schedule. Host
probes, lock and journal reads are not DO API requests (they go to the hosts), nor is the
sandbox's own labels endpoint, and they are replaced by no-ops
here so the virtual five minutes stay quick; `test_flows_sandbox` exercises them for real. The
proxies' traffic task (read from the hosts too) is left in, on host runtimes that only count the
reads (200 sandbox runtimes, two HTTP clients each, take minutes to build on a busy machine): it
must cost no API request, and read a 200-host fleet a bounded slice at a time.

Counted twice, independently: by the DO client (`requests_made`) and by the sandbox API's own
per-route counters (`/v2/...` routes only). Both must be <= 200, and no 60-second window may
hold more than 40.
"""

from __future__ import annotations

import pytest

from zdd_tui.project import Project
from zdd_tui.project.traffic import HOSTS_PER_SAMPLE
from zdd_tui.ui.poller import Poller
from zdd_tui.ui.source import FleetSource

from .conftest import sandbox_config
from .virtual_clock import VirtualClock

pytestmark = pytest.mark.slow

N_DROPLETS = 200


@pytest.fixture
async def big_sandbox(tmp_path):
    from zdd_tui.sandbox.supervisor import ExternalDroplet, Sandbox, SandboxOptions

    # 127.0.3.N: nothing listens there, and the LB checks them only every 30 s.
    external = [ExternalDroplet(f"app-{i:03d}", f"127.0.3.{i}") for i in range(1, N_DROPLETS + 1)]
    sb = Sandbox(SandboxOptions(state_dir=tmp_path / "big", hosts=0, external=external, lb_interval=30, lb_timeout=3))
    await sb.start()
    try:
        yield sb
    finally:
        await sb.stop()


def v2_requests(api) -> int:
    return sum(n for route, n in api.stats["by_route"].items() if " /v2/" in route)


async def test_console_requests_in_five_minutes_with_200_droplets(big_sandbox):
    src = FleetSource(await Project.open(sandbox_config(big_sandbox)), label="count")

    async def no_hosts():
        return {}

    async def no_rollout():
        return None

    async def no_history():
        from zdd_tui.project import Versions

        return Versions(ran=[])

    async def no_labels():
        return {}

    # Not DO API requests (see the docstring): the hosts, their lock and journals, and the
    # sandbox's own labels for its tags (an endpoint DigitalOcean does not have).
    src.hosts, src.rollout, src.history, src.tag_labels = no_hosts, no_rollout, no_history, no_labels
    read: list[str] = []

    class Proxy:
        def __init__(self, droplet):
            self.name = droplet.name

        async def traffic(self):
            read.append(self.name)
            return None

        async def close(self):
            pass

    src.project._runtime_factory = Proxy
    clock = VirtualClock()
    got: dict[str, object] = {}
    errors: list[str] = []

    def sink(task, result, error):
        if error is not None:
            errors.append(f"{task}: {error}")
        else:
            got[task] = result

    poller = Poller(src.tasks(), sink=sink, request_counter=lambda: src.requests_made, clock=clock)
    spent: list[tuple[float, int]] = []
    orig = poller.budget.spend
    poller.budget.spend = lambda now, n: (spent.append((now, n)), orig(now, n))
    api = big_sandbox.api
    before_client, before_api = src.requests_made, v2_requests(api)
    traffic_task = next(t for t in poller.tasks if t.name == "traffic")
    try:
        await poller.run(until=120)
        poller.set_rollout(True)  # a rollout from 2:00 to 4:00: LB health polled faster
        await poller.run(until=240)
        poller.set_rollout(False)
        await poller.run(until=300)
        made_client = src.requests_made - before_client
        made_api = v2_requests(api) - before_api
        # The traffic readings alone: not one API request.
        before_traffic = (src.requests_made, v2_requests(api))
        for _ in range(10):
            await src.traffic()
        assert (src.requests_made, v2_requests(api)) == before_traffic
    finally:
        await src.close()

    assert not errors, errors
    assert len(got["droplets"]) == N_DROPLETS  # the data really came back, 200 per page
    # About once a second, each time a slice of the fleet: never all 200 proxies at once.
    assert traffic_task.runs >= 250
    assert len(read) <= HOSTS_PER_SAMPLE * (traffic_task.runs + 10)
    assert set(read) == {f"app-{i:03d}" for i in range(1, N_DROPLETS + 1)}  # every host read in turn
    assert got["lb"] is not None and got["tags"]
    print(f"\nDO API requests in 5 virtual minutes, {N_DROPLETS} droplets: client {made_client}, "
          f"sandbox API {made_api}")
    assert made_api == made_client  # nothing hidden from the client's count
    assert 0 < made_api <= 200
    worst = max(sum(n for t, n in spent if s <= t < s + 60) for s, _ in spent)
    assert worst <= 40, f"{worst} requests in one minute"
