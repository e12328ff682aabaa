"""Console session cookies (made with the key, expiring, worthless with another key), and how secrets are compared.

The last tests read the package's source: a secret (API key, WHIP bearer, clientState, cookie signature, client
secret, token) is never compared with ``==``, ``!=`` or ``in``, whose running time tells an attacker how much of a guess
was right, but with ``hmac.compare_digest``; and ``compare_digest`` is given bytes, since on a ``str`` holding a
non-ASCII character it raises ``TypeError`` (a 500 for whoever sends one) instead of answering False.
"""

from __future__ import annotations

import ast
import functools
import itertools
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx

from mediabot.service.auth import (
    CONSOLE_COOKIE,
    CONSOLE_SESSION_S,
    ApiGate,
    console_cookie,
    is_console_session,
    key_matches,
)


def test_a_cookie_is_valid_for_its_key_until_it_expires() -> None:
    cookie = console_cookie("key-1", now=1000.0)
    assert is_console_session(cookie, "key-1", now=1000.0)
    assert is_console_session(cookie, "key-1", now=1000.0 + CONSOLE_SESSION_S - 1)
    assert not is_console_session(cookie, "key-1", now=1000.0 + CONSOLE_SESSION_S + 1)
    assert not is_console_session(cookie, "key-2", now=1000.0)
    assert not is_console_session(cookie, None, now=1000.0)


def test_tampered_and_malformed_cookies_are_refused() -> None:
    cookie = console_cookie("key-1", now=1000.0)
    expires, _, signature = cookie.partition(".")
    later = f"{int(expires) + 3600}.{signature}"  # extending the expiry breaks the signature
    for value in (later, "", ".", "abc.def", expires, f"{expires}.", "-1.x", None):
        assert not is_console_session(value, "key-1", now=1000.0)


def test_the_key_comparison_needs_a_configured_key() -> None:
    assert key_matches("k", "k")
    assert not key_matches("k", None) and not key_matches(None, "k") and not key_matches("", "")
    assert not key_matches("k", "K")


def test_the_console_origin_is_the_addressed_host_or_the_public_url() -> None:
    from starlette.requests import Request

    from mediabot.service.auth import same_origin

    def request(origin: str | None, host: str = "10.0.0.5:8080") -> Request:
        headers = [(b"host", host.encode())] + ([(b"origin", origin.encode())] if origin else [])
        return Request({"type": "http", "method": "POST", "path": "/", "headers": headers})

    assert same_origin(request("http://10.0.0.5:8080"))
    assert not same_origin(request(None))
    assert not same_origin(request("https://evil.example"))
    # Behind a proxy that rewrites Host, the public URL's origin is the console's.
    assert same_origin(request("https://bot.example.com"), "https://bot.example.com/base")
    assert not same_origin(request("https://bot.example.com.evil.example"), "https://bot.example.com")


# -- how secrets are compared ------------------------------------------------------------------------------------------

PACKAGE = Path(__file__).resolve().parents[2] / "mediabot"
# Words that make a name a secret's (``api_key``, ``client_state``, ``session.token``, ``get_secret_value()``...).
SECRET_WORDS = frozenset(
    {"token", "secret", "signature", "password", "passwd", "passphrase", "cookie", "credential", "credentials"}
    | {"hmac", "mac", "digest", "clientstate", "apikey"}
)
SECRET_PAIRS = frozenset(
    {("client", "state"), ("api", "key"), ("private", "key"), ("signing", "key"), ("secret", "key")}
    | {("session", "key"), ("access", "key"), ("shared", "key")}
)
# Comparisons that look like a secret's but are not, and why.
NOT_SECRETS = {
    ("sandbox/routes/subscriptions.py", "response.text != token"): "the emulator checks that a webhook echoed the "
    "validationToken it was just given (a public nonce, not a secret)",
}


def _words(name: str) -> list[str]:
    return [part for part in re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).lower().split("_") if part]


def _is_secret_name(name: str) -> bool:
    words = _words(name)
    return bool(SECRET_WORDS.intersection(words)) or any(pair in SECRET_PAIRS for pair in itertools.pairwise(words))


def _names(node: ast.AST) -> Iterator[str]:
    """The identifiers an operand is made of: ``self._session.token`` → token, _session, self."""
    if isinstance(node, ast.Name):
        yield node.id
    elif isinstance(node, ast.Attribute):
        yield node.attr
        yield from _names(node.value)
    elif isinstance(node, ast.Call):
        yield from _names(node.func)
    elif isinstance(node, ast.Subscript):
        if isinstance(node.slice, ast.Constant) and isinstance(node.slice.value, str):
            yield node.slice.value
        yield from _names(node.value)


@functools.cache
def _modules() -> list[tuple[str, ast.Module]]:
    return [
        (path.relative_to(PACKAGE).as_posix(), ast.parse(path.read_text("utf-8"), str(path)))
        for path in sorted(PACKAGE.rglob("*.py"))
    ]


def secret_comparisons(modules: list[tuple[str, ast.Module]]) -> list[str]:
    """``file:line: expression`` of every ``==``/``!=``/``in``/``not in`` with a secret-named operand.

    A literal on either side (``token == ""``, ``scheme != "bearer"``) is not a leak: there is nothing to guess.
    """
    found = []
    for module, tree in modules:
        for node in ast.walk(tree):
            if not isinstance(node, ast.Compare):
                continue
            sides = [node.left, *node.comparators]
            for op, (left, right) in zip(node.ops, itertools.pairwise(sides), strict=True):
                if not isinstance(op, ast.Eq | ast.NotEq | ast.In | ast.NotIn):
                    continue
                if isinstance(left, ast.Constant) or isinstance(right, ast.Constant):
                    continue
                if any(_is_secret_name(name) for side in (left, right) for name in _names(side)):
                    text = ast.unparse(ast.Compare(left=left, ops=[op], comparators=[right]))
                    if (module, text) not in NOT_SECRETS:
                        found.append(f"{module}:{node.lineno}: {text}")
    return found


def str_digests(modules: list[tuple[str, ast.Module]]) -> list[tuple[str, int, str]]:
    """``compare_digest`` calls whose arguments are not visibly bytes (``.encode()``, ``.digest()``, ``b"..."``)."""

    def is_bytes(node: ast.expr) -> bool:
        if isinstance(node, ast.Constant):
            return isinstance(node.value, bytes)
        return (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in ("encode", "digest", "tobytes")
        )

    found = []
    for module, tree in modules:
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "compare_digest"
                and not all(is_bytes(arg) for arg in node.args)
            ):
                found.append((module, node.lineno, ast.unparse(node)))
    return found


def test_the_scan_finds_what_it_is_meant_to() -> None:
    for name in ("api_key", "token", "clientState", "client_state", "get_secret_value", "signature", "_cookie"):
        assert _is_secret_name(name), name
    for name in ("key", "keys", "kid", "tokens_used", "monkey", "roster", "keypad"):
        assert not _is_secret_name(name), name
    sample = ast.parse(
        "a = given == settings.api_key.get_secret_value()\n"
        "b = self.session.token != header\n"
        "c = x.client_state in accepted\n"
        "d = token == ''\n"
        "e = key in self._tracks\n"
        "f = hmac.compare_digest(given, expected)\n"
        "g = hmac.compare_digest(given.encode(), expected.encode())\n"
    )
    found = secret_comparisons([("sample.py", sample)])
    assert [line.split(":")[1] for line in found] == ["1", "2", "3"], found
    assert [line for _, line, _ in str_digests([("sample.py", sample)])] == [6]


def test_no_secret_is_compared_in_variable_time() -> None:
    assert secret_comparisons(_modules()) == [], "compare secrets with hmac.compare_digest over bytes"


def test_compare_digest_is_given_bytes() -> None:
    found = str_digests(_modules())
    offenders = [f"{module}:{line}: {code}" for module, line, code in found]
    assert offenders == [], "encode both sides: compare_digest raises TypeError on a non-ASCII str"


def test_the_constant_time_checks_answer_false_on_non_ascii_input() -> None:
    assert not key_matches("k\u00e9y", "key")
    assert not key_matches("key", "k\u00e9y")
    assert key_matches("k\u00e9y", "k\u00e9y")
    cookie = console_cookie("key-1", now=1000.0)
    assert not is_console_session(cookie + "\u00e9", "key-1", now=1000.0)
    assert not is_console_session(cookie, "k\u00e9y", now=1000.0)


async def _echo_length(scope: Any, receive: Any, send: Any) -> None:
    """An ASGI app that reads the whole body and answers its length."""
    size = 0
    while True:
        message = await receive()
        size += len(message.get("body", b""))
        if not message.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": str(size).encode()})


async def test_the_api_gate_refuses_before_the_body_and_counts_a_chunked_one() -> None:
    gate = ApiGate(_echo_length, api_key="key-1", limit=1000)
    transport = httpx.ASGITransport(app=gate)
    async with httpx.AsyncClient(transport=transport, base_url="http://bot") as client:

        async def chunks(count: int) -> AsyncIterator[bytes]:
            for _ in range(count):
                yield b"x" * 100

        assert (await client.post("/v1/calls", content=b"{}")).status_code == 401
        cookie = {"Cookie": f"{CONSOLE_COOKIE}={console_cookie('key-1')}"}
        assert (await client.post("/v1/calls", content=b"{}", headers=cookie)).text == "2"
        bearer = {"Authorization": "Bearer key-1"}
        assert (await client.post("/v1/calls", content=b"x" * 1001, headers=bearer)).status_code == 413
        assert (await client.post("/v1/calls", content=chunks(11), headers=bearer)).status_code == 413
        assert (await client.post("/v1/calls", content=chunks(10), headers=bearer)).text == "1000"
        assert (await client.post("/api/calling", content=b"x" * 5000)).text == "5000"  # not the gate's business
