"""The rollout part of `zdd-tui status` (called by zdd_tui/fleetstatus.py): deploy lock, an
interrupted rollout and where each host got to, the last finished rollout, versions that ran."""

from __future__ import annotations


async def fleet_rollout_status(session, droplets) -> dict | None:
    """JSON-able; `lines` is the same in words for the text form."""
    from zdd_tui.operations import state_of

    if not droplets:
        return None
    runtimes = {d.name: session.runtime(d) for d in sorted(droplets, key=lambda d: d.name)}
    state = await state_of(runtimes)
    return {**state.to_dict(), "lines": state.lines()}
