"""Hooks, the Actions output, `history`, `lock` and `logs` as an operator meets them: `zdd-tui`
processes against an in-process sandbox (2 hosts, DO's shortest LB check), whose hosts are asked,
not the command's output, what they run."""

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
    from zdd_tui.project import Project

    async with await Project.open(config) as project:
        out = {}
        for name, rt in (await project.host_runtimes()).items():
            info = await rt.inspect()
            out[name] = info.tag if info else None
        return out


def hook(root, name: str, text: str) -> None:
    path = root / ".zdd" / "hooks" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755)


async def test_hooks_actions_output_history_lock_and_logs_on_a_sandbox(sandbox, tmp_path, monkeypatch):
    from zdd_tui.config import load_config

    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    project = tmp_path / "proj"
    project.mkdir()
    doc = yaml.safe_load(sandbox.config_path.read_text())
    doc.setdefault("deploy", {}).update(start_timeout_seconds=15, strategy="lb-drain")
    path = project / "zdd.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    config = load_config(path)
    cfg = ("--config", str(path))
    v1 = sandbox.info["hosts"][0]["tag"]
    v2 = next(t["tag"] for t in sandbox.info["tags"]
              if t["behaviour"] == "ok" and t["tag"].startswith("sha-") and t["tag"] != v1)
    before = await running(config)
    assert set(before.values()) == {v1}

    # A failing pre-deploy: refused (exit 4), its words quoted, and the fleet exactly as it was.
    hook(project, "pre-deploy", "#!/bin/sh\necho \"checking $ZDD_TAG for $ZDD_HOSTS\"\nexit 1\n")
    rc, out, err = await cli("deploy", "--tag", v2, "--yes", *cfg)
    assert rc == 4, (out, err)
    assert "hook .zdd/hooks/pre-deploy failed (exit 1); nothing was changed" in err
    assert f"| checking {v2} for app-1,app-2" in err
    assert await running(config) == before
    rc, out, _ = await cli("history", "--json", *cfg)
    assert rc == 0 and json.loads(out)["rollouts"] == []  # nothing reached the journal
    rc, out, _ = await cli("lock", "status", "--json", *cfg)
    assert rc == 0 and json.loads(out)["held"] is False

    # Passing hooks, in GitHub Actions: host groups on stdout, the summary table appended.
    hook(project, "pre-deploy", "#!/bin/sh\nexit 0\n")
    hook(project, "post-deploy", "#!/bin/sh\necho \"$ZDD_OUTCOME $ZDD_TAG\" > post.out\n")
    summary = tmp_path / "summary.md"
    rc, out, err = await cli("deploy", "--tag", v2, "--yes", "--json", *cfg,
                             env={"GITHUB_ACTIONS": "true", "GITHUB_STEP_SUMMARY": str(summary)})
    assert rc == 0, err
    assert set((await running(config)).values()) == {v2}
    lines = out.splitlines()
    assert "::group::app-1" in lines and "::group::app-2" in lines
    assert all(line.startswith(("{", "::group::", "::endgroup::")) for line in lines)
    assert (project / "post.out").read_text().split() == ["success", v2]
    text = summary.read_text()
    assert f"### zdd-tui deploy {v2}: success" in text
    assert f"| app-1 | {v1} | {v2} | {v2} |" in text and f"| app-2 | {v1} | {v2} | {v2} |" in text

    rc, out, _ = await cli("history", "--json", *cfg)
    (r,) = json.loads(out)["rollouts"]
    assert (r["action"], r["to_tag"], r["outcome"], r["hosts"]) == ("deploy", v2, "success", ["app-1", "app-2"])
    rc, out, _ = await cli("lock", "status", *cfg)
    assert rc == 0 and "deploy lock: free on every host (app-1, app-2)" in out
    rc, out, err = await cli("logs", "-n", "5", *cfg)
    assert rc == 0, err
    assert {line.split(" | ", 1)[0] for line in out.splitlines()} == {"app-1", "app-2"}
