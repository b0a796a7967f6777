"""SandboxRuntime against a running in-process sandbox: real service processes on loopback hosts."""

from __future__ import annotations

import httpx
import pytest

from zdd_tui.cloud.client import DOClient
from zdd_tui.cloud.models import Droplet
from zdd_tui.project.open import open_runtime
from zdd_tui.rollout.interfaces import HostRuntime, HostUnreachable, ImageNotFound, RuntimeFailure
from zdd_tui.sandbox.hosts import pid_alive
from zdd_tui.sandbox.runtime import SandboxRuntime

from .conftest import droplet_of, wait_until


def tags_by_behaviour(sb):
    out: dict[str, list[str]] = {}
    for t in sb.info["tags"]:
        out.setdefault(t["behaviour"], []).append(t["tag"])
    return out


async def test_fresh_sandbox_shape(sandbox, config):
    info = sandbox.info
    assert set(info) == {"api_url", "lb_url", "config", "hosts", "tags"}
    by = tags_by_behaviour(sandbox)
    assert "latest" in by["ok"] and len([t for t in by["ok"] if t.startswith("sha-")]) == 2
    for b in ("unhealthy", "crash", "slow", "errors", "plain"):
        assert len(by[b]) == 1 and by[b][0].startswith("sha-") and len(by[b][0]) == 11
    addrs = [h["address"] for h in info["hosts"]]
    assert len(set(addrs)) == 2
    assert all(a.startswith("127.") and a.rsplit(".", 1)[0] == addrs[0].rsplit(".", 1)[0] for a in addrs)
    # Hosts start on the older good version, so `latest` is a real change.
    running = {h["tag"] for h in info["hosts"]}
    assert len(running) == 1
    (initial,) = running
    repo = sandbox.api.state.data["repositories"]["app"]
    assert initial in by["ok"] and initial != "latest"
    assert repo[initial]["manifest_digest"] != repo["latest"]["manifest_digest"]
    assert config.is_sandbox and config.digitalocean.api_url == info["api_url"]


async def test_runtime_operations(sandbox, config):
    rt = open_runtime(config, droplet_of(sandbox, "app-1"))
    assert isinstance(rt, SandboxRuntime) and isinstance(rt, HostRuntime)
    try:
        c = await rt.inspect()
        assert c is not None and c.state == "running" and c.name == config.container_name
        first_pid = sandbox.hosts.get("app-1").pids()[0]
        probe = await rt.probe_health()
        assert probe.healthy and probe.status == 200
        stats = await rt.stats()
        assert stats is not None and stats.version == c.tag

        with pytest.raises(ImageNotFound):
            await rt.pull(f"{config.image_repo}:sha-0000000")
        latest = await rt.pull(f"{config.image_repo}:latest")
        other_ok = next(t for t in tags_by_behaviour(sandbox)["ok"] if t not in ("latest", c.tag))
        pinned = await rt.pull(f"{config.image_repo}:{other_ok}")
        assert latest.digest == pinned.digest  # latest aliases the newer good version

        with pytest.raises(RuntimeFailure):
            await rt.run(f"{config.image_repo}:latest")  # a running container has the name

        await rt.stop(5)
        assert await rt.inspect() is None
        assert not pid_alive(first_pid)
        dead = await rt.probe_health()
        assert not dead.healthy and dead.status is None and await rt.stats() is None
        await rt.stop(5)  # no-op without a container

        c2 = await rt.run(f"{config.image_repo}:latest", {"ZDD_GRACE_SECONDS": "3"})
        assert c2.state == "running" and c2.tag == "latest" and c2.digest == latest.digest
        await wait_until(lambda: _healthy(rt), timeout=10)
        s2 = await rt.stats()
        assert s2.version == other_ok  # latest carries its sha tag's version
        assert any("listening" in line for line in await rt.logs(50))
    finally:
        await rt.close()


async def test_drain_takes_host_out_of_the_lb_and_undrain_brings_it_back(sandbox, config):
    rt = open_runtime(config, droplet_of(sandbox, "app-2"))
    did = droplet_of(sandbox, "app-2").id
    try:
        await wait_until(lambda: sandbox.lb.health_view().get(did) is True)
        await rt.drain()
        assert (await rt.stats()).draining
        await wait_until(lambda: sandbox.lb.health_view()[did] is False, timeout=10)
        stats = await rt.stats()
        # The LB's checks are counted per source; our own probes are not among them.
        assert stats.health_checkers and all(h.consecutive_fail >= 2 for h in stats.health_checkers)
        await rt.undrain()
        await wait_until(lambda: sandbox.lb.health_view()[did] is True, timeout=10)
    finally:
        await rt.close()


async def test_crash_version_restarts_with_backoff(sandbox, config):
    crash = tags_by_behaviour(sandbox)["crash"][0]
    rt = open_runtime(config, droplet_of(sandbox, "app-1"))
    try:
        await rt.stop(5)
        await rt.run(f"{config.image_repo}:{crash}")
        c = await wait_until(lambda: _restarted(rt), timeout=10)
        assert c.state in ("restarting", "running") and c.exit_code == 3
        assert any("exited with code 3" in line for line in await rt.logs())
        assert not (await rt.probe_health()).healthy
        await rt.stop(2)
        assert await rt.inspect() is None
    finally:
        await rt.close()


async def test_bad_versions_pass_health_but_serve_badly(sandbox, config):
    """`errors` and `slow` are healthy: only their answers to `GET /` tell them from a good version."""
    by = tags_by_behaviour(sandbox)
    d = droplet_of(sandbox, "app-1")
    url = f"http://{d.public_ipv4}:{config.service.port}/"
    rt = open_runtime(config, d)
    try:
        await rt.stop(5)
        await rt.run(f"{config.image_repo}:{by['errors'][0]}")
        await wait_until(lambda: _healthy(rt), timeout=10)
        async with httpx.AsyncClient() as c:
            answers = [await c.get(url) for _ in range(400)]
        injected = [a for a in answers if a.status_code == 500]
        assert all(a.json() == {"error": "injected", "injected": True} for a in injected)
        assert len(injected) + sum(a.status_code == 200 for a in answers) == 400
        assert 5 <= len(injected) <= 45  # 5% of 400: 20, more than 3 standard deviations either way
        assert (await rt.probe_health()).healthy

        await rt.stop(5)
        await rt.run(f"{config.image_repo}:{by['slow'][0]}")
        await wait_until(lambda: _healthy(rt), timeout=20)  # it starts slowly too
        async with httpx.AsyncClient() as c:
            for _ in range(3):
                r = await c.get(url)
                assert r.status_code == 200 and r.elapsed.total_seconds() >= 0.25
    finally:
        await rt.close()


async def test_logs_since_an_instant(sandbox, config):
    """Each line of a sandbox container's output is stamped as the sandbox reads it, so the
    runtime's `since` keeps only what came after an instant (as `docker logs --since` does)."""
    import asyncio
    import time

    rt = open_runtime(config, droplet_of(sandbox, "app-2"))

    async def said(word: str, since: float | None = None):
        lines = await rt.logs(1000, since=since)
        return [line for line in lines if word in line] or None

    try:
        await wait_until(lambda: said("listening"), timeout=15)
        cut = time.time()
        await asyncio.sleep(0.05)
        await rt.drain()  # the service logs "zdd-service draining"
        await wait_until(lambda: said("draining"), timeout=10)
        after = await rt.logs(1000, since=cut)
        everything = await rt.logs(1000)
        assert after and any("draining" in line for line in after), after
        assert not any("listening" in line for line in after), after
        assert any("listening" in line for line in everything)
        assert everything[-len(after):] == after  # what came since the cut: the log's end
        assert await rt.logs(1000, since=time.time() + 60) == []
        assert await rt.logs(1, since=cut) == after[-1:]
        # A number the agent cannot take is refused by it, never read as "everything".
        with pytest.raises(RuntimeFailure, match="since must be epoch seconds"):
            await rt.logs(10, since=float("nan"))
    finally:
        await rt.undrain()
        await rt.close()


async def _healthy(rt):
    return (await rt.probe_health()).healthy


async def _restarted(rt):
    c = await rt.inspect()
    return c if c and c.restart_count >= 2 else None


async def test_state_files(sandbox, config):
    rt = open_runtime(config, droplet_of(sandbox, "app-1"))
    try:
        assert await rt.state_read("lock") is None
        assert await rt.state_create("lock", "holder=a\n") is True
        assert await rt.state_create("lock", "holder=b\n") is False
        assert await rt.state_read("lock") == "holder=a\n"
        await rt.state_write("lock", "holder=c\n")
        assert await rt.state_read("lock") == "holder=c\n"
        await rt.state_append("journal", '{"n": 1}')
        await rt.state_append("journal", '{"n": 2}')
        assert await rt.state_read("journal") == '{"n": 1}\n{"n": 2}\n'
        await rt.state_remove("lock")
        await rt.state_remove("lock")
        assert await rt.state_read("lock") is None
        for bad in ("../escape", ".hidden", "two words"):
            with pytest.raises(RuntimeFailure):
                await rt.state_write(bad, "x")
        with pytest.raises(RuntimeFailure, match="bad state file name"):
            await rt.state_create(".hidden", "x")
        assert sorted(p.name for p in (sandbox.state_dir / "hosts" / "app-1" / "state").iterdir()) == ["journal"]
        assert (sandbox.state_dir / "hosts" / "app-1" / "state" / "journal").exists()
    finally:
        await rt.close()


async def test_agent_needs_the_token_and_a_known_host(sandbox, config):
    d = droplet_of(sandbox, "app-1")
    bad = SandboxRuntime(config, d, token="wrong")
    ghost = SandboxRuntime(config, d.__class__(**{**d.__dict__, "name": "ghost"}))
    try:
        with pytest.raises(HostUnreachable):
            await bad.inspect()
        with pytest.raises(HostUnreachable):
            await ghost.inspect()
    finally:
        await bad.close()
        await ghost.close()


async def _active(do, droplet_id):
    d = await do.get_droplet(droplet_id)
    return d if d.status == "active" else None


async def test_droplets_created_and_deleted_through_the_api_start_and_stop_hosts(sandbox, config):
    async with DOClient(sandbox.api.url, sandbox.token) as do:
        created = await do.create_droplets(["extra-1"], region="nyc3", size="s-1vcpu-1gb", image="debian-12-x64",
                                           tags=["zdd-app"])
        d = created[0] if isinstance(created, list) else created
        host = sandbox.hosts.get("extra-1")  # made at once; the droplet has no address while new
        assert d.status == "new" and d.public_ipv4 is None
        d = await wait_until(lambda: _active(do, d.id))
        assert host.address == d.public_ipv4
        assert host.address.rsplit(".", 1)[0] == sandbox.hosts.get("app-1").address.rsplit(".", 1)[0]
        rt = open_runtime(config, d)
        try:
            assert await rt.inspect() is None  # a new droplet runs nothing until deployed to
            await rt.run(f"{config.image_repo}:latest")
            await wait_until(lambda: sandbox.lb.health_view().get(d.id) is True, timeout=10)
            pid = host.pids()[0]
            await do.delete_droplet(d.id)
            assert not pid_alive(pid)
            assert "extra-1" not in sandbox.hosts.hosts
            with pytest.raises(HostUnreachable):
                await rt.inspect()
        finally:
            await rt.close()


async def test_lb_serves_real_traffic_and_feeds_the_monitoring_metric(sandbox, config):
    ids = {droplet_of(sandbox, n).id for n in ("app-1", "app-2")}
    await wait_until(lambda: all(sandbox.lb.health_view().get(i) for i in ids))
    async with httpx.AsyncClient() as http:
        seen = set()
        for _ in range(6):
            r = await http.get(sandbox.lb.url + "/")
            assert r.status_code == 200
            seen.add(r.json()["id"])
        assert len(seen) == 2  # both hosts answer, round robin
    async with DOClient(sandbox.api.url, sandbox.token) as do:
        health = await do.lb_droplet_health(sandbox.lb_id)
        assert {k: v for k, v in health.items() if k in ids} == dict.fromkeys(ids, True)


async def test_a_put_on_the_lb_through_the_api_applies_live(sandbox, config):
    ids = {droplet_of(sandbox, n).id for n in ("app-1", "app-2")}
    await wait_until(lambda: all(sandbox.lb.health_view().get(i) for i in ids))
    async with DOClient(sandbox.api.url, sandbox.token) as do, httpx.AsyncClient() as http:
        lb = await do.get_load_balancer(sandbox.lb_id)
        # DO's API takes intervals of 3 s and more; the sandbox's fast 1 s came from its own state.
        hc3 = lb.health_check.__class__(**{**lb.health_check.__dict__, "check_interval_seconds": 3,
                                           "response_timeout_seconds": 3})
        await do.update_load_balancer(lb, tag="nobody", health_check=hc3)
        await wait_until(lambda: sandbox.lb.health_view() == {}, timeout=5)
        assert (await http.get(sandbox.lb.url + "/")).status_code == 503
        await do.update_load_balancer(lb, health_check=hc3)  # back to the droplets' tag
        # Re-targeted droplets start unhealthy and come back after the healthy threshold.
        assert (await http.get(sandbox.lb.url + "/")).status_code == 503
        await wait_until(lambda: all(sandbox.lb.health_view().get(i) for i in ids), timeout=15)
        assert (await http.get(sandbox.lb.url + "/")).status_code == 200


async def test_pulls_carry_short_lived_registry_credentials(sandbox, config):
    """A sandbox host pulls with fresh read-only credentials, as a droplet does; the sandbox's
    registry refuses a pull without them, and once they have expired."""
    api = sandbox.api

    def asked() -> int:
        return sum(1 for _m, p, q, s in api.request_log
                   if p.endswith("/docker-credentials") and "read_write=false" in q and s == 200)

    ref = f"{config.image_repo}:latest"
    rt = open_runtime(config, droplet_of(sandbox, "app-1"))
    try:
        before = asked()
        await rt.pull(ref)
        assert asked() == before + 1
    finally:
        await rt.close()

    token = sandbox.token
    async with DOClient(sandbox.api.url, token) as do:
        creds = await do.docker_credentials(config.registry.name, expiry_seconds=60)
    auth = next(iter(creds.auths.values()))["auth"]
    url = f"{config.digitalocean.api_url}/sandbox/hosts/app-1/pull"
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {token}"}) as http:
        assert (await http.post(url, json={"image_ref": ref, "auth": auth})).status_code == 200
        bare = await http.post(url, json={"image_ref": ref})
        assert bare.status_code == 403 and "authentication required" in bare.json()["message"]
        real_clock = api.clock
        api.clock = lambda: real_clock() + 61
        try:
            late = await http.post(url, json={"image_ref": ref, "auth": auth})
        finally:
            api.clock = real_clock
        assert late.status_code == 403 and "authentication required" in late.json()["message"]


async def test_runtimes_share_one_tls_context(monkeypatch):
    """A fleet's runtimes are cheap to build: no CA bundle loaded per HTTP client (each load took
    tens of milliseconds, 400 of them for 200 hosts), and each runtime still closes its clients."""
    import ssl

    from zdd_tui.config import Config

    loads: list[object] = []
    real = ssl.SSLContext.load_verify_locations

    def counted(self, *args, **kwargs):
        loads.append(args or kwargs)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(ssl.SSLContext, "load_verify_locations", counted)
    droplets = [Droplet(id=i, name=f"app-{i}", status="active", region="nyc3", size="s-1vcpu-1gb",
                        public_ipv4=f"127.0.3.{i}", private_ipv4=None, tags=()) for i in range(1, 21)]
    runtimes = [SandboxRuntime(Config(), d, api_url="http://127.0.0.1:9", token="t") for d in droplets]
    try:
        assert len(loads) <= 1, f"{len(loads)} CA bundle loads for {len(runtimes)} runtimes"
    finally:
        for rt in runtimes:
            await rt.close()
    assert all(rt._agent.is_closed and rt._direct.is_closed for rt in runtimes)
