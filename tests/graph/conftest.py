"""Fixtures for the Graph plane tests: settings and clients pointed at the running sandbox."""

from __future__ import annotations

import json
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

from mediabot.graph import GraphClient
from mediabot.sandbox import SandboxServer
from tests.conftest import sandbox_settings

SCHEMA_BASE = "https://msgraph-contract.local/schemas/v1.0/"


class RecordingTransport(httpx.AsyncBaseTransport):
    """The real network, with every request kept so tests can check what the client sent."""

    def __init__(self, verify: str) -> None:
        self._inner = httpx.AsyncHTTPTransport(verify=ssl.create_default_context(cafile=verify), trust_env=False)
        self.sent: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(request)
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()

    def bodies(self) -> list[tuple[str, str, Any]]:
        """(method, path, JSON body) of every request that had a body."""
        out = []
        for request in self.sent:
            if request.content:
                out.append((request.method, request.url.path, json.loads(request.content)))
        return out


@pytest.fixture
async def recording(sandbox: SandboxServer) -> RecordingTransport:
    return RecordingTransport(str(sandbox.ca_path))


@pytest.fixture
async def graph(sandbox: SandboxServer, recording: RecordingTransport) -> AsyncIterator[GraphClient]:
    """mediabot's GraphClient as the default app, over real HTTPS to the sandbox, its requests recorded."""
    async with GraphClient(sandbox_settings(sandbox), transport=recording) as client:
        yield client


@pytest.fixture(scope="session")
def schema_registry(graph_contract: Path) -> Registry:
    registry: Registry = Registry()
    folder = graph_contract / "schemas"
    for path in [*folder.glob("microsoft.graph.*.json"), *(folder / "actions").glob("*.json")]:
        schema = json.loads(path.read_text())
        registry = registry.with_resource(schema["$id"], Resource.from_contents(schema))
    return registry


@pytest.fixture(scope="session")
def validator_for(schema_registry: Registry):
    def make(name: str) -> Draft202012Validator:
        schema = schema_registry.contents(SCHEMA_BASE + name)
        return Draft202012Validator(schema, registry=schema_registry)

    return make
