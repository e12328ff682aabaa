"""The console as served: its login, its static files and their rules, the security headers, a page CSP lets run whole.

The console's behaviour in a real browser is in ``test_console_browser.py``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from mediabot.sandbox import SandboxServer
from tests.service.conftest import API_KEY, ServiceServer
from tests.service.pages import parsed, public_get

# What the browser tests (and anyone scripting the console) select on, present in the page before any script runs.
TEST_IDS = {
    "nav",
    "nav-live",
    "nav-recordings",
    "nav-search",
    "stream-status",
    "join-link",
    "logout",
    "error-banner",
    "view-live",
    "live-calls",
    "live-calls-count",
    "live-calls-empty",
    "live-sessions",
    "live-sessions-count",
    "live-sessions-empty",
    "view-recordings",
    "recordings-table",
    "recordings-count",
    "recordings-refresh",
    "recordings-empty",
    "page-prev",
    "page-next",
    "page-info",
    "view-recording",
    "recording-title",
    "recording-key",
    "recording-badges",
    "recording-facts",
    "timeline",
    "transcript",
    "transcript-empty",
    "audio-list",
    "tones",
    "tones-empty",
    "files",
    "view-search",
    "search-form",
    "search-input",
    "search-submit",
    "search-status",
    "search-results",
}


def _post(service: ServiceServer, path: str, **kwargs: Any) -> httpx.Response:
    return httpx.post(f"{service.base_url}{path}", verify=service.ssl_context, trust_env=False, **kwargs)


# -- login -------------------------------------------------------------------------------------------------------------


def test_a_wrong_key_is_refused_and_sets_no_cookie(service: ServiceServer) -> None:
    response = _post(service, "/console/login", json={"api_key": "not-the-key"})
    assert response.status_code == 401
    assert "set-cookie" not in response.headers
    form = _post(service, "/console/login", data={"api_key": "not-the-key", "next": "/console"})
    assert form.status_code == 303 and form.headers["location"] == "/console/login?failed=1"
    assert "set-cookie" not in form.headers
    assert _post(service, "/console/login", json={}).status_code == 401
    assert (
        _post(service, "/console/login", content=b"[1, 2]", headers={"content-type": "application/json"}).status_code
        == 400
    )
    assert _post(service, "/console/login", content=b"x" * 5000).status_code == 413


def test_the_right_key_sets_an_http_only_strict_secure_cookie(service: ServiceServer) -> None:
    response = _post(service, "/console/login", json={"api_key": API_KEY, "next": "/console#/recordings"})
    assert response.status_code == 200
    assert response.json() == {"next": "/console#/recordings"}
    cookie = response.headers["set-cookie"]
    attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")[1:]}
    assert cookie.startswith("mediabot_console=")
    assert {"httponly", "secure", "samesite", "path", "max-age"} <= attributes
    assert re.search(r"(?i)samesite=strict", cookie)
    assert re.search(r"(?i)path=/(;|$)", cookie)
    value = response.cookies["mediabot_console"]
    assert API_KEY not in value, "the cookie must not carry the key itself"
    session = {"Cookie": f"mediabot_console={value}"}
    assert public_get(service, "/v1/live", headers=session).status_code == 200
    assert public_get(service, "/v1/live").status_code == 401


def test_the_login_form_redirects_to_next_and_sets_the_cookie(service: ServiceServer) -> None:
    response = _post(service, "/console/login", data={"api_key": API_KEY, "next": "/console#/search?q=x"})
    assert response.status_code == 303
    assert response.headers["location"] == "/console#/search?q=x"
    assert "mediabot_console=" in response.headers["set-cookie"]


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.example/",
        "//evil.example/console",
        "/\\evil.example",
        "\\\\evil.example",
        "evil.example",
        "javascript:alert(1)",
        "",
    ],
)
def test_next_never_leaves_this_site(service: ServiceServer, target: str) -> None:
    as_json = _post(service, "/console/login", json={"api_key": API_KEY, "next": target})
    assert as_json.json() == {"next": "/console"}
    as_form = _post(service, "/console/login", data={"api_key": API_KEY, "next": target})
    assert as_form.headers["location"] == "/console"


def test_logout_clears_the_cookie(service: ServiceServer) -> None:
    response = _post(service, "/console/logout")
    assert response.status_code == 200 and response.json() == {"next": "/console/login"}
    cookie = response.headers["set-cookie"]
    assert cookie.startswith('mediabot_console=""') or cookie.startswith("mediabot_console=;")
    assert re.search(r"(?i)max-age=0", cookie)


def test_without_an_api_key_the_console_is_off(sandbox: SandboxServer, tmp_path: Path) -> None:
    server = ServiceServer(sandbox, output_dir=tmp_path, api_key=None).start()
    try:
        response = _post(server, "/console/login", json={"api_key": "anything"})
    finally:
        server.stop()
    assert response.status_code == 409
    assert "MEDIABOT_API_KEY" in response.json()["detail"]


# -- pages, static files, headers --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/console", "/console/login", "/console/static/console.js", "/console/static/console.css"]
)
def test_every_console_file_carries_the_security_headers(service: ServiceServer, path: str) -> None:
    response = public_get(service, path)
    assert response.status_code == 200
    csp = response.headers["content-security-policy"]
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";") if d.strip())
    assert directives["default-src"] == "'self'"
    assert directives["connect-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'"
    assert "'unsafe-inline'" not in csp and "'unsafe-eval'" not in csp
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"


def test_static_files_are_served_with_their_types(service: ServiceServer) -> None:
    page = public_get(service, "/console")
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    script = public_get(service, "/console/static/console.js")
    assert script.headers["content-type"] == "text/javascript; charset=utf-8"
    style = public_get(service, "/console/static/console.css")
    assert style.headers["content-type"].startswith("text/css")
    assert "--bg" in style.text


@pytest.mark.parametrize(
    "name",
    [
        "missing.js",
        ".hidden.js",
        "app.py",
        "..%2Froutes%2Fconsole.py",
        "%2E%2E%2F..%2F..%2F..%2Fpyproject.toml",
        "..%5Capp.py",
        "console.js.map",
    ],
)
def test_only_the_consoles_own_html_js_and_css_are_served(service: ServiceServer, name: str) -> None:
    response = public_get(service, f"/console/static/{name}")
    assert response.status_code == 404
    assert b"import" not in response.content


def test_the_console_loads_only_its_own_files_and_nothing_inline(service: ServiceServer) -> None:
    page = parsed(service, "/console")
    assert page.scripts == [("/console/static/console.js", "module")]
    assert page.stylesheets == ["/console/static/console.css"]
    assert page.inline == [], "the Content-Security-Policy would block these"
    missing = TEST_IDS - page.test_ids
    assert not missing, f"elements without their data-testid: {sorted(missing)}"
    login = parsed(service, "/console/login")
    assert login.inline == [] and login.stylesheets == ["/console/static/console.css"]


def test_every_element_the_script_looks_up_is_on_the_page(service: ServiceServer) -> None:
    page = parsed(service, "/console")
    script = public_get(service, "/console/static/console.js").text
    looked_up = set(re.findall(r'\$\("([\w-]+)"\)', script))
    assert len(looked_up) > 20, "the script looks little up (the pattern no longer matches it)"
    assert looked_up <= page.ids, f"ids the script needs but the page lacks: {sorted(looked_up - page.ids)}"


def test_the_script_talks_only_to_this_origin_and_never_parses_html(service: ServiceServer) -> None:
    script = public_get(service, "/console/static/console.js").text
    assert not re.search(r"https?://", script)  # connect-src 'self': the API by path only
    for sink in (
        r"\.(inner|outer)HTML\s*\+?=",
        r"insertAdjacentHTML\(",
        r"document\.write",
        r"\beval\(",
        r"new Function",
    ):
        assert not re.search(sink, script), f"{sink}: what the API returns must never be parsed as HTML or code"
    assert not re.search(r"setAttribute\(\s*[\"']style", script), "CSP blocks style attributes; use el.style"


# -- found by fuzzing (tests/service/test_fuzz.py) ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 2000 + b"]" * 2000,  # json.loads raised RecursionError: a 500
        b'{"api_key": "\\ud800"}',  # the key check could not encode it: a 500
        b'{"api_key": "' + API_KEY.encode() + b'", "next": "/\\udc00"}',  # the JSON answer could not encode it
        b'{"api_key": ["' + API_KEY.encode() + b'"]}',
    ],
    ids=["deep", "surrogate-key", "surrogate-next", "key-not-text"],
)
def test_a_login_body_that_is_not_a_json_object_of_text_is_refused(service: ServiceServer, body: bytes) -> None:
    response = _post(service, "/console/login", content=body, headers={"content-type": "application/json"})
    assert response.status_code in (400, 401)
    assert "set-cookie" not in response.headers
