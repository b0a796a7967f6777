"""What each sandbox tag is: the failure modes a new user can deploy on purpose, in words."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from zdd_tui.sandbox.images import BEHAVIOURS

# A behaviour (sandbox/images.py BEHAVIOURS) -> the label the registry pane shows; "ok" and
# "plain" (a good version without an admin port) have none. The error share is the image's own.
LABELS = {
    "unhealthy": "fails health",
    "crash": "crashes",
    "slow": "slow",
    "errors": f"{float(BEHAVIOURS['errors']['ZDD_ERROR_RATE']) * 100:g}% errors",
}


async def tag_labels(client: Any, repository: str) -> dict[str, str]:
    """tag -> label, from the sandbox API's own registry view (one request; not a DO endpoint)."""
    body = await client._read("read the sandbox's tags", f"/sandbox/registry/{quote(repository, safe='')}/tags")
    out = {}
    for t in (body or {}).get("tags", []):
        label = LABELS.get(str(t.get("behaviour", "ok")))
        if label and isinstance(t.get("tag"), str):
            out[t["tag"]] = label
    return out
