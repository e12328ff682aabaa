"""The ``/join`` page as served: headers, its static files, and a page the strict CSP lets run whole.

The page's behaviour in a real browser is in ``test_join_browser.py``.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

import httpx

from tests.service.conftest import ServiceServer

# What the browser tests (and anyone scripting the page) select on.
TEST_IDS = {
    "join",
    "leave",
    "status",
    "error",
    "mic-level",
    "elapsed",
    "speaking",
    "segments",
    "speaking-time",
    "session-id",
    "transcript",
    "done",
    "done-session",
    "done-folder",
    "recording-link",
    "console-link",
    "remote-audio",
}


class _Page(HTMLParser):
    """Collects ids, test ids, scripts, stylesheets and anything CSP would block on the page."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.test_ids: set[str] = set()
        self.scripts: list[str] = []
        self.stylesheets: list[str] = []
        self.inline: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if values.get("id"):
            self.ids.add(str(values["id"]))
        if values.get("data-testid"):
            self.test_ids.add(str(values["data-testid"]))
        for name in values:
            if name == "style" or name.startswith("on"):
                self.inline.append(f"<{tag} {name}=…>")
        if tag == "style":
            self.inline.append("<style>")
        if tag == "script":
            self._in_script = True
            if values.get("src"):
                self.scripts.append(str(values["src"]))
            else:
                self.inline.append("<script> without src")
        if tag == "link" and values.get("rel") == "stylesheet":
            self.stylesheets.append(str(values["href"]))

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline.append("inline script text")


def _get(service: ServiceServer, path: str) -> httpx.Response:
    # Signed out, as a browser first opens the page: the page and its files are public.
    return httpx.get(f"{service.base_url}{path}", verify=service.ssl_context, trust_env=False)


def test_join_page_is_served_with_the_console_security_headers(service: ServiceServer) -> None:
    response = _get(service, "/join")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    csp = response.headers["content-security-policy"]
    assert "default-src 'self'" in csp
    assert "connect-src 'self'" in csp
    assert response.headers["x-content-type-options"] == "nosniff"


def test_join_page_loads_only_its_own_files_and_nothing_inline(service: ServiceServer) -> None:
    page = _Page()
    page.feed(_get(service, "/join").text)
    assert page.scripts == ["/console/static/join.js"]
    assert page.stylesheets == ["/console/static/console.css", "/console/static/join.css"]
    assert page.inline == [], "the Content-Security-Policy would block these"
    missing = TEST_IDS - page.test_ids
    assert not missing, f"elements without their data-testid: {sorted(missing)}"


def test_join_static_files_are_served_with_their_types(service: ServiceServer) -> None:
    script = _get(service, "/console/static/join.js")
    assert script.status_code == 200
    assert script.headers["content-type"] == "text/javascript; charset=utf-8"
    assert "content-security-policy" in script.headers
    assert '"use strict";' in script.text
    style = _get(service, "/console/static/join.css")
    assert style.status_code == 200
    assert style.headers["content-type"].startswith("text/css")


def test_every_element_the_script_looks_up_is_on_the_page(service: ServiceServer) -> None:
    page = _Page()
    page.feed(_get(service, "/join").text)
    script = _get(service, "/console/static/join.js").text
    looked_up = set(re.findall(r'\$\("([\w-]+)"\)', script))
    assert looked_up, "the script looks nothing up (the pattern no longer matches it)"
    assert looked_up <= page.ids, f"ids the script needs but the page lacks: {sorted(looked_up - page.ids)}"


def test_join_script_talks_only_to_this_origin(service: ServiceServer) -> None:
    script = _get(service, "/console/static/join.js").text
    # connect-src 'self': the WHIP endpoint and the API are reached on the page's own origin, never by absolute URL.
    assert not re.search(r"https?://", script)
