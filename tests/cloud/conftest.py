"""An in-process sandbox API and a DOClient (real httpx reads, real pydo writes) pointed at it."""

from __future__ import annotations

import pytest

from zdd_tui.cloud.client import DOClient
from zdd_tui.sandbox.api import SandboxAPI

TOKEN = "dop_v1_cloudtest0123456789abcdef"


@pytest.fixture
def token() -> str:
    return TOKEN


@pytest.fixture
async def sandbox(tmp_path):
    api = SandboxAPI(tmp_path / "sandbox", TOKEN, activation_delay=0)
    await api.start()
    try:
        yield api
    finally:
        await api.stop()


@pytest.fixture
async def do(sandbox):
    async with DOClient(sandbox.url, TOKEN, retry_backoff=0.01, recheck_delay=0.05) as client:
        yield client

