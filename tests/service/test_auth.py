"""Console session cookies: made with the key, expiring, and worthless with another key."""

from __future__ import annotations

from mediabot.service.auth import CONSOLE_SESSION_S, console_cookie, is_console_session, key_matches


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
