"""The ``/join`` page as served: headers, its static files, and a page the strict CSP lets run whole.

The page's behaviour in a real browser is in ``test_join_browser.py``.
"""

from __future__ import annotations

import re

from tests.service.conftest import ServiceServer
from tests.service.pages import parsed, public_get

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


def test_join_page_is_served_with_the_console_security_headers(service: ServiceServer) -> None:
    response = public_get(service, "/join")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    csp = response.headers["content-security-policy"]
    assert "default-src 'self'" in csp
    assert "connect-src 'self'" in csp
    assert response.headers["x-content-type-options"] == "nosniff"


def test_join_page_loads_only_its_own_files_and_nothing_inline(service: ServiceServer) -> None:
    page = parsed(service, "/join")
    assert page.scripts == [("/console/static/join.js", None)]
    assert page.stylesheets == ["/console/static/console.css", "/console/static/join.css"]
    assert page.inline == [], "the Content-Security-Policy would block these"
    missing = TEST_IDS - page.test_ids
    assert not missing, f"elements without their data-testid: {sorted(missing)}"


def test_join_static_files_are_served_with_their_types(service: ServiceServer) -> None:
    script = public_get(service, "/console/static/join.js")
    assert script.status_code == 200
    assert script.headers["content-type"] == "text/javascript; charset=utf-8"
    assert "content-security-policy" in script.headers
    assert '"use strict";' in script.text
    style = public_get(service, "/console/static/join.css")
    assert style.status_code == 200
    assert style.headers["content-type"].startswith("text/css")


def test_every_element_the_script_looks_up_is_on_the_page(service: ServiceServer) -> None:
    page = parsed(service, "/join")
    script = public_get(service, "/console/static/join.js").text
    looked_up = set(re.findall(r'\$\("([\w-]+)"\)', script))
    assert looked_up, "the script looks nothing up (the pattern no longer matches it)"
    assert looked_up <= page.ids, f"ids the script needs but the page lacks: {sorted(looked_up - page.ids)}"


def test_join_script_talks_only_to_this_origin(service: ServiceServer) -> None:
    script = public_get(service, "/console/static/join.js").text
    # connect-src 'self': the WHIP endpoint and the API are reached on the page's own origin, never by absolute URL.
    assert not re.search(r"https?://", script)
