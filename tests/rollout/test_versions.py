"""project/versions.py: which versions ran, from journals written by the real Journal."""

from __future__ import annotations

from datetime import UTC, datetime

from zdd_tui.cloud.models import RegistryTag
from zdd_tui.project.versions import Versions, deploy_choice, ran_versions, with_registry
from zdd_tui.rollout.journal import Journal, read_records, summarize

from .fakes import FakeClock, World


async def history(w: World, steps) -> list:
    t = [0.0]
    j = Journal(w.hosts, wallclock=lambda: t[0])
    for rid, to, frm, results, status, at in steps:
        t[0] = at
        await j.start(rollout_id=rid, action="rollback" if rid.startswith("rb") else "deploy", to_tag=to,
                      image_ref=f"r:{to}", operator="ops@desk", hosts=sorted(frm), from_tags=frm, batch_size=1)
        for host, outcome, ended in results:
            t[0] = ended
            await j.host(rid, host, outcome=outcome, step=None, from_tag=frm[host], to_tag=to,
                         digest=f"sha256:{to}", seen="", started=ended - 5)
        await j.end(rid, status, "", {})
    records = (await read_records(w.hosts)).records
    return ran_versions(summarize(records))


async def test_deploys_and_rollback_give_each_version_its_last_run():
    w = World(FakeClock(), names=("h1", "h2"))
    vs = await history(w, [
        ("r1", "sha-2", {"h1": "sha-1", "h2": "sha-1"}, [("h1", "done", 110), ("h2", "done", 120)], "success", 100),
        ("r2", "sha-3", {"h1": "sha-2", "h2": "sha-2"}, [("h1", "done", 210), ("h2", "done", 220)], "success", 200),
        ("rb3", "sha-2", {"h1": "sha-3", "h2": "sha-3"}, [("h1", "done", 310), ("h2", "done", 320)], "success", 300),
    ])
    assert [v.tag for v in vs] == ["sha-2", "sha-3", "sha-1"]
    now, left, first = vs
    assert now.current and now.since == 310 and now.action == "rollback" and now.operator == "ops@desk"
    assert now.ran_seconds(400) == 90 and now.hosts == ("h1", "h2")
    assert left.until == 320 and left.since == 210 and left.ran_seconds(999) == 110 and left.ended == "success"
    assert first.since is None and first.until == 120 and first.rollout_id is None  # before the history


async def test_a_halted_deploy_leaves_a_mixed_fleet_and_the_previous_is_the_newest_left():
    w = World(FakeClock(), names=("h1", "h2"))
    vs = await history(w, [
        ("r1", "sha-2", {"h1": "sha-1", "h2": "sha-1"}, [("h1", "done", 110), ("h2", "done", 120)], "success", 100),
        ("r2", "sha-3", {"h1": "sha-2", "h2": "sha-2"}, [("h1", "done", 210), ("h2", "restored", 230)], "halted", 200),
    ])
    current = {v.tag: v for v in vs if v.current}
    assert set(current) == {"sha-3", "sha-2"}
    assert current["sha-3"].hosts == ("h1",) and current["sha-3"].ended == "halted"
    assert current["sha-2"].hosts == ("h2",)
    assert Versions(ran=vs).previous.tag == "sha-1"  # type: ignore[union-attr]
    assert with_registry(vs, []).missing == {"sha-1", "sha-2", "sha-3"}  # an empty registry has none
    # A version deleted from the registry is never the one `rollback` picks on its own.
    tags = [RegistryTag("app", t, f"sha256:{t}", 1, datetime(2026, 1, i + 1, tzinfo=UTC))
            for i, t in enumerate(("sha-2", "sha-3", "sha-9"))]
    versions = with_registry(vs, tags)
    assert versions.previous is None and versions.never_ran == ["sha-9"]


def test_deploy_choice_states_its_rule():
    tags = [RegistryTag("app", "latest", "sha256:b", 1, None), RegistryTag("app", "sha-aaaaaaa", "sha256:a", 1, None),
            RegistryTag("app", "sha-bbbbbbb", "sha256:b", 1, None)]
    assert deploy_choice(tags, "sha-aaaaaaa") == ("sha-aaaaaaa", "sha-aaaaaaa is the current git HEAD's tag")
    tag, why = deploy_choice(tags, "sha-ccccccc")
    assert tag == "sha-bbbbbbb" and "`latest` points at" in why
    assert deploy_choice(tags[:1], None)[0] == "latest"
    assert deploy_choice([], None)[0] is None
