"""A sandbox API whose every exchange is recorded, and DigitalOcean's spec to validate them with."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web
from openapi_core import OpenAPI

from zdd_tui.sandbox.api import SandboxAPI

SPEC_PATH = Path(__file__).with_name("do-openapi-zdd.json")
TOKEN = "contract-test-token-0123456789"


@dataclass
class Exchange:
    method: str
    path: str
    query: dict
    request_body: bytes
    request_type: str
    status: int
    headers: dict
    body: bytes
    route: str  # the sandbox's route template


@pytest.fixture(scope="session")
def openapi() -> OpenAPI:
    return OpenAPI.from_dict(json.loads(SPEC_PATH.read_text()))


@pytest.fixture
async def recorded_api(tmp_path):
    api = SandboxAPI(tmp_path / "state", TOKEN, activation_delay=0)
    exchanges: list[Exchange] = []

    @web.middleware
    async def record(request: web.Request, handler):
        body = await request.read() if request.can_read_body else b""
        response = await handler(request)
        route = request.match_info.route.resource
        exchanges.append(
            Exchange(
                method=request.method.lower(),
                path=request.path,
                query=dict(request.query),
                request_body=body,
                request_type=request.content_type,
                status=response.status,
                headers=dict(response.headers),
                body=response.body if isinstance(response.body, bytes) else b"",
                route=route.canonical if route is not None else request.path,
            )
        )
        return response

    # Outermost, so it sees the auth/rate-limit/fault answers too.
    api.app.middlewares.insert(0, record)
    await api.start()
    api.exchanges = exchanges
    api.test_token = TOKEN
    try:
        yield api
    finally:
        await api.stop()
