"""What the console's and join page's tests share: fetching a page signed out, reading it as CSP would, Chromium."""

from __future__ import annotations

import shutil
from html.parser import HTMLParser
from typing import Any

import httpx
import pytest

from tests.service.conftest import ServiceServer

# Headless Chromium on a closed network: no background fetches, no first-run work.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def chromium_path() -> str:
    """The system Chromium; the browser tests fail (not skip) without it."""
    executable = shutil.which("chromium")
    if executable is None:
        pytest.fail("Chromium is needed for the browser tests: apt-get install chromium")
    return executable


class Page(HTMLParser):
    """Collects ids, test ids, scripts, stylesheets and anything the strict CSP would block."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.test_ids: set[str] = set()
        self.scripts: list[tuple[str, str | None]] = []
        self.stylesheets: list[str] = []
        self.inline: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if values.get("id"):
            self.ids.add(str(values["id"]))
        if values.get("data-testid"):
            self.test_ids.add(str(values["data-testid"]))
        self.inline.extend(f"<{tag} {name}=…>" for name in values if name == "style" or name.startswith("on"))
        if tag == "style":
            self.inline.append("<style>")
        if tag == "script":
            self._in_script = True
            if values.get("src"):
                self.scripts.append((str(values["src"]), values.get("type")))
            else:
                self.inline.append("<script> without src")
        if tag == "link" and values.get("rel") == "stylesheet":
            self.stylesheets.append(str(values["href"]))
        if tag == "a" and str(values.get("href", "")).startswith("javascript:"):
            self.inline.append("javascript: link")

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline.append("inline script text")


def public_get(service: ServiceServer, path: str, **kwargs: Any) -> httpx.Response:
    """GET signed out, as a browser first opens the page: the pages and their files are public."""
    return httpx.get(f"{service.base_url}{path}", verify=service.ssl_context, trust_env=False, **kwargs)


def parsed(service: ServiceServer, path: str) -> Page:
    """The page at ``path``, read."""
    page = Page()
    page.feed(public_get(service, path).text)
    return page
