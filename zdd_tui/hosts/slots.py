"""The app's slot containers on a droplet (local-swap), read from what docker and ss print.

Pure functions, no I/O: names, `docker container inspect` JSON -> ContainerInfo, the choice of
what to prune, and counting the lines of `ss`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from zdd_tui.app_secrets import LABEL as SECRETS_LABEL
from zdd_tui.hosts import argv as host_argv
from zdd_tui.rollout.interfaces import SLOTS, ContainerInfo

LIVE_STATES = ("running", "restarting")  # a slot with one of these is taken
# Set by the runtime on each start, so they differ between two starts of the same version.
VOLATILE_ENV = ("ZDD_ROLLOUT_ID",)


def container_name(base: str, slot: str, tag: str) -> str:
    """`<container_name>-<slot>-<tag>`: one container per version and slot (docker's name rules)."""
    if slot not in SLOTS:
        raise ValueError(f"unknown slot {slot!r}")
    return host_argv.check_container_name(f"{base}-{slot}-{tag}")


def epoch(ts: str | None) -> float | None:
    """Docker's RFC 3339 time (nanoseconds) -> epoch seconds; its zero time -> None."""
    if not ts or ts.startswith("0001-"):
        return None
    m = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)", ts)
    if not m:
        return None
    frac = float(m.group(2) or 0)
    tz = "+00:00" if m.group(3) == "Z" else m.group(3)
    return datetime.fromisoformat(m.group(1) + tz).timestamp() + frac


def container_info(raw: Mapping[str, Any], digest: str | None = None) -> ContainerInfo:
    """One entry of `docker container inspect` (slot and port from its zdd labels, if any)."""
    config = raw.get("Config") or {}
    labels = config.get("Labels") or {}
    ref = config.get("Image", "")
    st = raw.get("State") or {}
    status = st.get("Status", "unknown")
    slot = labels.get("zdd.slot")
    try:
        port: int | None = int(labels["zdd.port"])
    except (KeyError, ValueError, TypeError):
        port = None
    return ContainerInfo(
        name=(raw.get("Name") or "").lstrip("/"),
        image_ref=ref,
        tag=labels.get("zdd.tag") or host_argv.tag_of(ref),
        digest=labels.get("zdd.digest") or digest,
        state=status,
        started_at=epoch(st.get("StartedAt")),
        exit_code=None if status == "running" else st.get("ExitCode"),
        restart_count=int(raw.get("RestartCount") or 0),
        slot=slot if slot in SLOTS else None,
        port=port,
        stopped_at=None if status in LIVE_STATES else epoch(st.get("FinishedAt")),
        secrets=labels.get(SECRETS_LABEL) or None,
    )


def live_on(containers: Iterable[ContainerInfo], slot: str) -> list[ContainerInfo]:
    """The slot's containers that run (or restart after a crash)."""
    return [c for c in containers if c.slot == slot and c.state in LIVE_STATES]


def to_prune(containers: Sequence[ContainerInfo], keep: int) -> list[ContainerInfo]:
    """Stopped containers beyond the newest `keep` by the time they stopped (never stopped:
    oldest)."""
    stopped = [c for c in containers if c.state not in LIVE_STATES]
    stopped.sort(key=lambda c: (c.stopped_at or 0.0, c.started_at or 0.0), reverse=True)
    return stopped[max(0, keep):]


def env_lines(env_text: str, fixed: Mapping[str, str]) -> set[str]:
    """The `NAME=value` lines a container created from this env file and these `--env` values
    holds (without VOLATILE_ENV), to compare with its inspect's Config.Env."""
    lines = {ln for ln in env_text.splitlines() if ln}
    lines |= {f"{k}={v}" for k, v in fixed.items()}
    return {ln for ln in lines if _name(ln) not in VOLATILE_ENV}


def env_names(lines: Iterable[str]) -> str:
    """The label `zdd.env`: the names (never the values) of the variables zdd-tui set, so that a
    later comparison can tell them from those the image sets."""
    return ",".join(sorted({_name(ln) for ln in lines}))


def same_start(raw: Mapping[str, Any], *, slot: str, image_ref: str, want_env: set[str]) -> bool:
    """Would `docker start` of this (stopped) container run what a new one would: same slot,
    same image reference, exactly the variables zdd-tui would set now (VOLATILE_ENV aside)?"""
    config = raw.get("Config") or {}
    labels = config.get("Labels") or {}
    if labels.get("zdd.slot") != slot or config.get("Image") != image_ref or "zdd.env" not in labels:
        return False
    ours = set(str(labels["zdd.env"]).split(",")) - set(VOLATILE_ENV)
    have = {ln for ln in config.get("Env") or () if _name(ln) in ours}
    return have == want_env


def _name(line: str) -> str:
    return line.split("=", 1)[0]


def count_lines(stdout: str) -> int:
    """Sockets listed by `ss -H` (one per non-empty line)."""
    return sum(1 for ln in stdout.splitlines() if ln.strip())


def count_by_port(stdout: str) -> dict[int, int]:
    """Sockets listed by `ss -H`, per port of their peer (the last column, `address:port`)."""
    counts: dict[int, int] = {}
    for ln in stdout.splitlines():
        words = ln.split()
        if not words:
            continue
        _, sep, port = words[-1].rpartition(":")
        if sep and port.isdigit():
            counts[int(port)] = counts.get(int(port), 0) + 1
    return counts
