"""`zdd-tui rollback` with no tag, `--list` and `--json`, as an operator runs them: subprocesses
against an in-process sandbox (2 hosts, DO's shortest LB check) whose hosts are asked, not the
command's output, where each version runs."""

from __future__ import annotations

import json

import pytest
import yaml
from sandboxkit import cli, small_sandbox

pytestmark = pytest.mark.slow


@pytest.fixture
async def sandbox(tmp_path):
    async with small_sandbox(tmp_path) as sb:
        yield sb


async def running(config) -> dict[str, str | None]:
    """host -> the tag its container runs, asked of the hosts themselves."""
    from zdd_tui.project import Project

    async with await Project.open(config) as project:
        runtimes = await project.host_runtimes()
        out = {}
        for name, rt in runtimes.items():
            info = await rt.inspect()
            out[name] = info.tag if info else None
        return out


async def test_rollback_with_no_tag_list_and_json(sandbox, tmp_path):
    from zdd_tui.config import load_config

    doc = yaml.safe_load(sandbox.config_path.read_text())
    # The lb-drain sandbox (one container per host); local-swap has its own (test_localswap_sandbox.py).
    doc.setdefault("deploy", {}).update(start_timeout_seconds=15, strategy="lb-drain")
    path = tmp_path / "zdd.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    config = load_config(path)
    cfg = ("--config", str(path))
    tags = {t["tag"]: t["behaviour"] for t in sandbox.info["tags"]}
    v1 = sandbox.info["hosts"][0]["tag"]
    v2 = next(t for t, b in tags.items() if b == "ok" and t.startswith("sha-") and t != v1)

    # A fresh fleet: nothing ran before the current version, so there is nothing to go back to.
    rc, out, err = await cli("rollback", "--yes", *cfg)
    assert rc == 4, (rc, out, err)
    assert "no previous version to roll back to" in err and "zdd-tui rollback --list" in err
    rc, out, err = await cli("rollback", "--list", *cfg)
    assert rc == 0 and "no version has run on this fleet yet" in out, (out, err)

    rc, out, err = await cli("deploy", "--tag", v2, "--yes", *cfg)
    assert rc == 0, err
    assert set((await running(config)).values()) == {v2}

    rc, out, err = await cli("rollback", "--list", *cfg)
    assert rc == 0, err
    lines = out.splitlines()
    assert lines[0].startswith(f"* {v2} ") and "runs now" in lines[0] and "deploy success" in lines[0]
    assert lines[1].startswith(f"> {v1} ") and "app-1, app-2" in lines[1]
    rc, out, err = await cli("rollback", "--list", "--json", *cfg)
    assert rc == 0, err
    doc = json.loads(out)
    assert [v["tag"] for v in doc["ran"]] == [v2, v1] and doc["previous"] == v1
    assert doc["ran"][0]["current"] and doc["ran"][0]["action"] == "deploy" and doc["ran"][0]["ended"] == "success"
    assert sorted(doc["ran"][1]["hosts"]) == ["app-1", "app-2"] and not doc["ran"][1]["current"]
    assert v2 not in doc["never_ran"] and v1 not in doc["never_ran"]
    assert {doc["labels"][t] for t in doc["labels"]} == {"fails health", "crashes", "slow", "5% errors"}

    # Without --yes and without a terminal to ask on: refused, nothing changes.
    rc, out, err = await cli("rollback", *cfg)
    assert rc == 2 and "without confirmation" in err
    assert set((await running(config)).values()) == {v2}

    # No tag: back to the version that ran before.
    rc, out, err = await cli("rollback", "--yes", "--json", *cfg)
    assert rc == 0, err
    assert [json.loads(line) for line in out.splitlines()] and v1 in out  # JSON lines naming v1
    assert await running(config) == {"app-1": v1, "app-2": v1}
    rc, out, err = await cli("rollback", "--list", "--json", *cfg)
    doc = json.loads(out)
    assert [v["tag"] for v in doc["ran"]][:2] == [v1, v2] and doc["previous"] == v2
    assert doc["ran"][0]["action"] == "rollback"
