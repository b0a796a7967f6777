"""The one event base and the one headless renderer: JSON kinds (a contract with CI scripts),
the JSON form, and the lines for people of setup and build events (rollout lines are checked
on a real engine run in tests/rollout/test_rollout_parts.py)."""

from __future__ import annotations

import io
import json

from zdd_tui.events import Event, HostReport, LogLine
from zdd_tui.headless import HeadlessRenderer
from zdd_tui.images.events import BuildFinished, BuildOutput, BuildStarted, LayerProgress, PushFinished
from zdd_tui.rollout.events import HealthChanged, Phase, PhaseChanged, Progress, RolloutFinished, RolloutPlanned
from zdd_tui.setup.events import Preview, PreviewShown, StepDone, StepError, StepProgress, StepStarted


def test_json_kinds_are_the_published_ones():
    kinds = {
        RolloutPlanned: "planned", PhaseChanged: "phase", Progress: "progress", HealthChanged: "health",
        LogLine: "log", RolloutFinished: "finished",
        PreviewShown: "preview", StepStarted: "step-started", StepProgress: "step-progress",
        HostReport: "host-report", StepDone: "step-done", StepError: "step-failed",
        BuildStarted: "build-started", BuildOutput: "build-output", BuildFinished: "build-finished",
        LayerProgress: "layer", PushFinished: "push-finished",
    }
    for cls, kind in kinds.items():
        assert issubclass(cls, Event) and cls.kind == kind, cls


def test_to_dict_stamps_only_when_the_emitter_has_a_clock():
    assert PhaseChanged("h1", Phase.DRAINING, at=2.5).to_dict() == {
        "kind": "phase", "at": 2.5, "host": "h1", "phase": "draining", "detail": ""}
    assert StepDone("lb", "created", "lb active", ("lb",)).to_dict() == {
        "kind": "step-done", "step": "lb", "status": "created", "detail": "lb active", "created": ["lb"]}


def _render(events, **kw) -> list[str]:
    out = io.StringIO()
    r = HeadlessRenderer(out, **kw)
    for e in events:
        r(e)
    return out.getvalue().splitlines()


def test_setup_lines():
    preview = Preview("load-balancer", "Load balancer", ("load balancer lb-1",), ("droplet a",), 12.0,
                      "1 node at $12/month")
    lines = _render([
        PreviewShown(preview),
        StepStarted("load-balancer", "Load balancer"),  # the preview named it: no line
        StepProgress("load-balancer", "waiting for it to be active", 0.5),
        HostReport("bootstrap", "web-1", "192.0.2.1", False, {"docker": "missing"}),
        StepDone("load-balancer", "created", "lb-1 active"),
        StepError("bootstrap", "host bootstrap failed"),
    ])
    assert lines == [
        "", "== Load balancer ==", "  found: droplet a", "  will create: load balancer lb-1",
        "  cost: +$12.00/month (1 node at $12/month)",
        "  .. [ 50%] waiting for it to be active",
        "  host web-1 (192.0.2.1): NOT READY", "    docker: missing",
        "  created: lb-1 active",
        "  FAILED: host bootstrap failed",
    ]


def test_build_lines_and_layer_progress_thinned_in_both_forms():
    events = [
        BuildStarted(("r/svc:latest", "r/svc:sha-abc1234"), "/src", "Dockerfile"),
        BuildOutput("Step 1/2 : FROM debian"),
        BuildFinished("sha256:aaa", ("r/svc:latest",)),
        LayerProgress("sha-abc1234", "l1", "Preparing"),
        *(LayerProgress("sha-abc1234", "l1", "Pushing", n, 1000) for n in range(0, 1001, 50)),
        LayerProgress("sha-abc1234", "l1", "Pushed"),
        PushFinished("r/svc:sha-abc1234", "sha256:bbb", 528),
    ]
    lines = _render(events)
    assert lines[:3] == ["building r/svc:latest, r/svc:sha-abc1234 from /src (Dockerfile)", "  Step 1/2 : FROM debian",
                         "built sha256:aaa"]
    layer = [line for line in lines if " layer l1: " in line]
    assert layer[0] == "  sha-abc1234 layer l1: Preparing"
    assert layer[-1] == "  sha-abc1234 layer l1: Pushed"
    assert 5 <= len(layer) <= 8  # status changes and whole quarters, not 21 byte counts
    assert lines[-1] == "pushed r/svc:sha-abc1234 sha256:bbb"
    js = [json.loads(line) for line in _render(events, json_lines=True)]
    assert [e["kind"] for e in js].count("layer") == len(layer)
    assert js[0] == {"kind": "build-started", "tags": ["r/svc:latest", "r/svc:sha-abc1234"], "context": "/src",
                     "dockerfile": "Dockerfile"}


def test_rollout_lines_are_timed_and_progress_only_on_request():
    events = [
        PhaseChanged("app-1", Phase.PULLING, at=10.0),
        Progress("app-1", 0.5, 0.25, at=11.0),
        LogLine("app-1", "pulled", level="warning", at=12.0),
    ]
    assert _render(events) == ["[   0.0s] app-1        pulling image", "[   2.0s] app-1        WARNING: pulled"]
    assert _render(events, show_progress=True)[1] == "[   1.0s] overall 25%"
