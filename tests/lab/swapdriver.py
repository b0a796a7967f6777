"""Switches on the lab's hosts through the product's own runtime (the project opened as the CLI
opens it: the API's droplets, the operator's SSH key and pinned host keys), for what no deploy
does by itself: many switches in a row between two running slots.

Run in the project's directory with the operator's environment (e2ekit.E2E.env):
    python swapdriver.py switches TAG COUNT
On every host at once: TAG started on the idle slot and healthy, COUNT switches (an even COUNT
ends on the slot that was active), the idle slot drained and stopped (kept, as a deploy keeps
it). Prints one JSON object: host -> what happened.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

from zdd_tui.config import load_config
from zdd_tui.project.open import Project
from zdd_tui.project.rollout import image_ref
from zdd_tui.rollout.interfaces import other_slot

PAUSE = 0.25  # seconds between switches: each new upstream serves some requests
BOUND = 30.0  # seconds for the new container's health and for the drain


async def _bounded(what: str, fn: Any, ok: Any) -> Any:
    deadline = time.monotonic() + BOUND
    while True:
        value = await fn()
        if ok(value):
            return value
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not within {BOUND:.0f} s (last: {value!r})")
        await asyncio.sleep(0.1)


async def _one(rt: Any, ref: str, count: int) -> dict:
    status = await rt.proxy()
    active = status.active_slot
    if not status.healthy or active is None:
        raise RuntimeError(f"{rt.name}: the proxy is not serving a slot ({status})")
    idle = other_slot(active)
    await rt.pull(ref)
    started = await rt.run_slot(idle, ref)
    await _bounded(f"{rt.name}: slot {idle} healthy", lambda: rt.probe_slot(idle), lambda p: p.healthy)
    took = []
    slot = active
    for _ in range(count):
        slot = other_slot(slot)
        t0 = time.monotonic()
        await rt.switch(slot)
        took.append(round(time.monotonic() - t0, 3))
        await asyncio.sleep(PAUSE)
    drained = await _bounded(f"{rt.name}: nothing in flight to slot {idle}", lambda: rt.in_flight(idle),
                             lambda n: n == 0 or slot == idle)
    if slot != idle:
        await rt.stop_slot(idle, 10)
    final = await rt.proxy()
    return {"active": active, "idle": idle, "container": started.name, "switch_seconds": took,
            "final": final.active_slot, "drained": drained}


async def switches(tag: str, count: int) -> dict:
    config = load_config("zdd.yaml")
    project = await Project.open(config)
    async with project:
        runtimes = await project.host_runtimes()
        ref = image_ref(config, tag)
        done = await asyncio.gather(*(_one(rt, ref, count) for rt in runtimes.values()))
        return dict(zip(runtimes, done, strict=True))


def main(argv: list[str]) -> int:
    if len(argv) != 4 or argv[1] != "switches":
        print(__doc__, file=sys.stderr)
        return 2
    print(json.dumps(asyncio.run(switches(argv[2], int(argv[3])))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
