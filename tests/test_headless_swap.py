"""Headless output of a local-swap rollout: its phases in words, the switch (the tag the proxy now
sends traffic to) and the proxy's health, in lines for people and in JSON lines."""

from __future__ import annotations

import io
import json

from ui.swapfake import NEW, OLD, swap_plan, swap_stream

from zdd_tui.headless import HeadlessRenderer


def _render(events, **kw) -> list[str]:
    out = io.StringIO()
    r = HeadlessRenderer(out, **kw)
    for e in events:
        r(e)
    return out.getvalue().splitlines()


def test_lines_name_the_phases_the_switch_and_the_proxy():
    events, _ = swap_stream(swap_plan())
    lines = _render(events)
    app1 = [line.split("] ", 1)[1] for line in lines if "] app-1 " in line]
    assert [" ".join(line.split()) for line in app1] == [
        f"app-1 pulling image: registry.digitalocean.com/zdd/app:{NEW}",
        f"app-1 {NEW} present on the host",
        "app-1 waiting its turn: image pulled; waiting its turn",
        f"app-1 starting new container: {NEW} on slot b",
        "app-1 checking health: slot b",
        "app-1 direct probe: healthy (200 on slot b)",
        "app-1 switching: a -> b",
        f"app-1 traffic now goes to {NEW} (slot b; was {OLD})",
        "app-1 proxy: healthy",
        "app-1 draining old: 2 requests in flight to slot a",
        f"app-1 stopping old: {OLD} on slot a",
        f"app-1 done: {NEW}",
    ]
    assert lines[-2] == f"OK: 3 host(s) now run {NEW}" and lines[-1].startswith("  took ")


def test_json_lines_carry_the_switch_the_new_phases_and_the_proxy():
    events, _ = swap_stream(swap_plan())
    docs = [json.loads(line) for line in _render(events, json_lines=True)]
    assert docs[0]["kind"] == "planned" and docs[0]["plan"]["strategy"] == "local-swap"
    switched = [d for d in docs if d["kind"] == "switched"]
    assert [(d["host"], d["slot"], d["tag"], d["from_tag"]) for d in switched] == [
        (h, "b", NEW, OLD) for h in ("app-1", "app-2", "app-3")]
    phases = {d["phase"] for d in docs if d["kind"] == "phase"}
    assert {"checking-health", "switching", "draining-old", "stopping-old"} <= phases
    proxy = [d for d in docs if d["kind"] == "health" and d["view"] == "proxy"]
    assert len(proxy) == 3 and all(d["healthy"] is True and d["established"] is False for d in proxy)
