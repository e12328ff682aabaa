"""Request bodies: limits enforced before reading; bodies that are not Unicode text refused before any parsing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, FastAPI, HTTPException, Request
from pydantic import BaseModel

from mediabot.service._body import CheckedBodyRoute, check_text, parse_json, read_limited

LIMIT = 1024


class Small(CheckedBodyRoute):
    max_body = LIMIT


class Item(BaseModel):
    name: str


router = APIRouter(route_class=Small)


@router.post("/checked")
async def checked(item: Item) -> dict[str, str]:
    return {"name": item.name}


def _app() -> FastAPI:
    app = FastAPI()
    app.include_router(router)

    @app.post("/raw")
    async def raw(request: Request) -> dict[str, int]:
        return {"bytes": len(await read_limited(request, LIMIT))}

    return app


class Counted:
    """A streamed body of ``size`` bytes that counts what the server pulled."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.sent = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while self.sent < self.size:
            self.sent += 256
            yield b"x" * 256


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(_app()), base_url="http://test") as client:
        yield client


@pytest.mark.parametrize("path", ["/raw", "/checked"])
async def test_a_declared_oversized_body_is_refused_before_any_of_it_is_read(
    client: httpx.AsyncClient, path: str
) -> None:
    body = Counted(LIMIT * 100)
    response = await client.post(path, content=body, headers={"Content-Length": str(body.size)})
    assert response.status_code == 413
    assert body.sent == 0


@pytest.mark.parametrize("path", ["/raw", "/checked"])
async def test_a_streamed_body_is_read_only_until_it_passes_the_limit(client: httpx.AsyncClient, path: str) -> None:
    body = Counted(LIMIT * 100)
    response = await client.post(path, content=body)
    assert response.status_code == 413
    assert body.sent <= LIMIT + 256


async def test_a_body_within_the_limit_reaches_the_route(client: httpx.AsyncClient) -> None:
    assert (await client.post("/raw", content=b"x" * LIMIT)).json() == {"bytes": LIMIT}
    assert (await client.post("/checked", json={"name": "\U0001f600"})).json() == {"name": "\U0001f600"}


@pytest.mark.parametrize(
    "body",
    [
        # json.loads(bytes) decodes with surrogatepass: these bytes encode U+D800, and as a key they were accepted.
        b'{"\xed\xa0\x80name": "x", "name": "y"}',
        b'{"name": "\xff"}',
        # An unpaired surrogate escape: the str reached httpx and the JSON renderer, which raised (a 500).
        b'{"name": "\\ud800"}',
        b'{"name": "a\\udc00b"}',
    ],
)
async def test_a_json_body_that_is_not_unicode_text_is_refused(client: httpx.AsyncClient, body: bytes) -> None:
    response = await client.post("/checked", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 400


def test_check_text_passes_paired_surrogates_and_leaves_broken_json_to_the_parser() -> None:
    check_text(b'{"name": "\\ud83d\\ude00"}')
    check_text(b'{"name": "\\\\ud800"}')  # an escaped backslash, then text
    check_text(b'{"name": "\\ud800"')  # not JSON: FastAPI's parser refuses it
    with pytest.raises(HTTPException) as refused:
        check_text(b'["\\ud800"]')
    assert refused.value.status_code == 400


@pytest.mark.parametrize(
    "body", [b"[" * 10_000 + b"]" * 10_000, b'{"a": "\\ud800"}', b"\xff", b"{", b'{"a": NaN'], ids=repr
)
def test_parse_json_refuses_with_400(body: bytes) -> None:
    with pytest.raises(HTTPException) as refused:
        parse_json(body)
    assert refused.value.status_code == 400


def test_parse_json_reads_unicode_json() -> None:
    value: Any = parse_json(b'{"a": ["\\ud83d\\ude00", 1, null]}')
    assert value == {"a": ["\U0001f600", 1, None]}
