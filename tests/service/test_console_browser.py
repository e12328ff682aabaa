"""The console end to end in real headless Chromium: sign-in, recordings, a call's page, search, and live sessions.

The recorded call is a folder written the way the recorder writes one (``test_recordings_api.write_call``) and indexed
before the service starts; the live session is real: a standalone session published to over WHIP by aiortc in this
test's event loop, with speech from the fixtures, while the page follows ``/v1/live/events``.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import numpy as np
import numpy.typing as npt
import pytest
import soxr
from aiortc import RTCSessionDescription
from playwright.async_api import Browser, Page, async_playwright, expect

from mediabot.sandbox import SandboxServer
from tests.media.conftest import RATE, offer_for
from tests.service.conftest import API_KEY, ServiceServer
from tests.service.pages import CHROMIUM_ARGS, chromium_path
from tests.service.test_recordings_api import (
    CALL_KEY,
    CALL_LINES,
    CALL_SECONDS,
    SPEECH,
    index_folders,
    read_wav,
    write_call,
)

UTTERANCE = SPEECH / "austen_0880.wav"  # 2.99 s, speech from 0.25 s to 2.77 s
UTTERANCE_SPAN_S = (0.15, 2.9)  # what is published of it: the speech and a little around it
WAIT_MS = 20_000  # a bound on waiting for the page, not a timing assertion


@pytest.fixture
def service(sandbox: SandboxServer, tmp_path: Path) -> Iterator[ServiceServer]:
    """The service over an output folder holding one finished, indexed call; loopback ICE for aiortc publishers."""
    output = tmp_path / "out"
    write_call(output)
    index_folders(output)
    server = ServiceServer(sandbox, output_dir=output, media_ice_loopback=True, transcriber="none").start()
    try:
        yield server
    finally:
        server.stop()


@contextlib.asynccontextmanager
async def _chromium() -> AsyncIterator[Browser]:
    async with async_playwright() as driver:
        browser = await driver.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


async def _sign_in(browser: Browser, service: ServiceServer, path: str, errors: list[str]) -> Page:
    """Open ``path`` signed out, get sent to the login form, sign in there, and land back on ``path``.

    What the page's scripts throw is collected in ``errors``.
    """
    context = await browser.new_context(ignore_https_errors=True)
    page = await context.new_page()
    page.on("console", lambda message: print(f"browser console {message.type}: {message.text}"))
    page.on("pageerror", lambda error: errors.append(str(error)))
    await page.goto(f"{service.base_url}{path}")
    await page.wait_for_url(re.compile(r"/console/login\?next="))
    await page.fill("#api_key", API_KEY)
    await page.click("button[type=submit]")
    await page.wait_for_url(f"{service.base_url}{path}")
    return page


def _speech_at_48k(pattern: list[float | None]) -> npt.NDArray[np.int16]:
    """The utterance wherever ``pattern`` has None, silences of the given seconds elsewhere, at 48 kHz."""
    first, last = (round(s * 16000) for s in UTTERANCE_SPAN_S)
    speech = soxr.resample(read_wav(UTTERANCE)[first:last].astype(np.float64), 16000, RATE)
    parts = [speech if item is None else np.zeros(round(item * RATE)) for item in pattern]
    return np.clip(np.round(np.concatenate(parts)), -32768, 32767).astype(np.int16)


async def test_a_finished_call_opens_with_its_timeline_audio_and_a_seekable_transcript(
    service: ServiceServer, tmp_path: Path
) -> None:
    errors: list[str] = []
    async with _chromium() as browser:
        page = await _sign_in(browser, service, "/console#/recordings", errors)
        row = page.get_by_test_id("recording-row")
        await expect(row).to_have_count(1)
        await expect(row).to_have_attribute("data-key", CALL_KEY)
        await expect(row).to_contain_text("Adele Vance, Alex Wilber")
        await expect(row).to_contain_text("0:08")
        await expect(row).to_contain_text("complete")
        media: list[tuple[str, int]] = []
        page.on("response", lambda r: media.append((r.url, r.status)) if "/audio/" in r.url else None)
        await row.click()
        await page.wait_for_url(re.compile(f"#/recordings/{CALL_KEY}$"))
        await expect(page.get_by_test_id("recording-title")).to_have_text(f"Call {CALL_KEY[:8]}")

        timeline = page.get_by_test_id("timeline")
        await expect(timeline).to_have_js_property("complete", True, timeout=WAIT_MS)
        assert await timeline.evaluate("img => img.naturalWidth") > 0, "the timeline picture did not load"
        assert (tmp_path / "out" / CALL_KEY / "timeline.png").is_file()

        mixed = page.get_by_test_id("audio-mixed")
        await expect(mixed).to_have_count(1)
        people = page.get_by_test_id("audio-participant")
        await expect(people).to_have_count(2)
        await expect(page.get_by_test_id("audio-item")).to_contain_text(
            ["Mix of all tracks", "Adele Vance", "Alex Wilber"]
        )
        await page.wait_for_function(
            "() => [...document.querySelectorAll('audio')].every(audio => audio.readyState >= 1)", timeout=WAIT_MS
        )
        durations = await page.eval_on_selector_all("audio", "audios => audios.map(audio => audio.duration)")
        assert durations == [pytest.approx(CALL_SECONDS, abs=0.01)] * 3
        sources = await page.eval_on_selector_all("audio", "audios => audios.map(audio => audio.src)")
        for src in sources:
            response = await page.context.request.get(src)  # with the page's cookie, as the element fetches it
            assert response.status == 200, src
            body = await response.body()  # the whole file: the 44-byte header `wave` wrote, then the audio
            assert len(body) == 44 + round(CALL_SECONDS * 16000) * 2 and body[:4] == b"RIFF"
        assert {url for url, _ in media} == set(sources) and all(status in (200, 206) for _, status in media)

        lines = page.get_by_test_id("transcript-line")
        await expect(lines).to_have_count(2)
        await expect(lines.get_by_test_id("transcript-speaker")).to_have_text(["Adele Vance", "Alex Wilber"])
        await expect(lines.get_by_test_id("transcript-text")).to_have_text([line.text for line in CALL_LINES])
        start = float(await lines.nth(1).get_attribute("data-start") or "nan")
        assert start == pytest.approx(4.17)
        await lines.nth(1).click()
        # The mix is put at the line's start (and plays on from there).
        await page.wait_for_function(
            "start => { const audio = document.querySelector('[data-testid=audio-mixed]');"
            " return audio.currentTime >= start - 0.01 && audio.currentTime < start + 1.5; }",
            arg=start,
            timeout=WAIT_MS,
        )
        await expect(lines.nth(1)).to_have_class(re.compile(r"\btarget\b"))
        await expect(page.get_by_test_id("tone")).to_have_count(3)
        await expect(page.get_by_test_id("tones")).to_contain_text("Alex Wilber")
        await expect(page.get_by_test_id("file")).to_have_count(3 + 6)
    assert errors == [], "the page's scripts threw"


async def test_a_published_session_is_followed_live_and_then_listed_under_recordings(service: ServiceServer) -> None:
    signal = _speech_at_48k([0.2, None, 1.0, None, 0.8])
    bearer = {"Authorization": f"Bearer {API_KEY}"}
    errors: list[str] = []
    async with (
        _chromium() as browser,
        httpx.AsyncClient(
            base_url=service.base_url, verify=service.ssl_context, trust_env=False, headers=bearer, timeout=30
        ) as http,
    ):
        page = await _sign_in(browser, service, "/console#/live", errors)
        await expect(page.get_by_test_id("stream-status")).to_have_attribute("data-state", "live")
        opened = (await http.post("/v1/sessions")).json()
        session_id = opened["session_id"]
        card = page.locator(f'[data-testid="live-session"][data-id="{session_id}"]')
        await expect(card).to_be_visible()
        await expect(card.get_by_test_id("recording-state")).to_have_text("recording")
        await expect(page.get_by_test_id("live-sessions-empty")).to_be_hidden()

        pc, _track = await offer_for(signal)
        answer = await http.post(
            opened["whip_url"],
            params={"source": "main"},
            content=pc.localDescription.sdp,
            headers={"Authorization": f"Bearer {opened['token']}", "Content-Type": "application/sdp"},
        )
        assert answer.status_code == 201, answer.text
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=answer.text, type="answer"))
            source = card.get_by_test_id("participant")
            await expect(source).to_have_count(1, timeout=WAIT_MS)
            await expect(source).to_have_attribute("data-source-id", "main")
            await expect(source.get_by_test_id("participant-name")).to_have_text("Publisher")
            # While the first utterance plays: the indicator lights and the meter shows its level.
            await expect(source.get_by_test_id("speaking")).to_have_attribute("data-speaking", "true", timeout=WAIT_MS)
            await expect(source).to_have_class(re.compile(r"\bspeaking\b"))
            await expect(source.get_by_test_id("level")).to_have_attribute("data-dbfs", re.compile(r"^-[1-4]?\d\.\d$"))
            # Each utterance closes a segment once its silence is long enough: the count rises 1, then 2.
            await expect(card).to_have_attribute("data-segments", "1", timeout=WAIT_MS)
            await expect(source.get_by_test_id("segments")).to_have_text("1 seg")
            await expect(card).to_have_attribute("data-segments", "2", timeout=WAIT_MS)
            await expect(source.get_by_test_id("segments")).to_have_text("2 seg")
            await expect(source.get_by_test_id("speaking-time")).not_to_have_text(re.compile(r"^0\.0 s$"))
        finally:
            closed = await http.delete(f"/v1/sessions/{session_id}")
            await pc.close()
        assert closed.status_code == 200 and closed.json()["summary"]["segments"] >= 2
        await expect(card).to_have_count(0)

        await page.get_by_test_id("nav-recordings").click()
        row = page.locator(f'[data-testid="recording-row"][data-key="{session_id}"]')
        # The list refreshes itself while shown: the session appears once it is indexed.
        await expect(row).to_be_visible(timeout=WAIT_MS)
        await expect(row).to_contain_text("browser join")
        await expect(page.get_by_test_id("recording-row")).to_have_count(2)
        await row.click()
        await expect(page.get_by_test_id("recording-title")).to_have_text(f"Browser join {session_id[:8]}")
        await expect(page.get_by_test_id("audio-mixed")).to_have_count(1)
        await expect(page.get_by_test_id("audio-item")).to_contain_text(["Mix of all tracks", "Publisher (main)"])
        timeline = page.get_by_test_id("timeline")
        await expect(timeline).to_have_js_property("complete", True, timeout=WAIT_MS)
        assert await timeline.evaluate("img => img.naturalWidth") > 0
    assert errors == [], "the page's scripts threw"


async def test_signed_out_goes_to_login_and_back_to_a_search_then_signs_out(service: ServiceServer) -> None:
    errors: list[str] = []
    async with _chromium() as browser:
        page = await _sign_in(browser, service, "/console#/search?q=amiable", errors)
        await expect(page.get_by_test_id("search-input")).to_have_value("amiable")
        result = page.get_by_test_id("search-result")
        await expect(result).to_have_count(1)
        await expect(result).to_contain_text("Alex Wilber")
        await expect(result.locator("mark")).to_have_text("amiable")
        await page.get_by_test_id("search-input").fill("zzzz")
        await page.get_by_test_id("search-submit").click()
        await expect(page.get_by_test_id("search-status")).to_have_text("No line matches.")
        await page.get_by_test_id("search-input").fill("*")
        await page.get_by_test_id("search-submit").click()
        await expect(page.get_by_test_id("search-status")).to_contain_text("no word to search for")
        await page.go_back()
        await page.go_back()
        await expect(result).to_have_count(1)
        await result.locator("a").click()
        await page.wait_for_url(re.compile(rf"#/recordings/{CALL_KEY}\?t=4\.17$"))
        await expect(page.get_by_test_id("transcript-line").nth(1)).to_have_class(re.compile(r"\btarget\b"))
        assert await page.get_by_test_id("audio-mixed").evaluate("audio => audio.currentTime") == pytest.approx(4.17)

        await page.get_by_test_id("logout").click()
        await page.wait_for_url(re.compile(r"/console/login$"))
        await page.goto(f"{service.base_url}/console#/recordings")
        await page.wait_for_url(re.compile(r"/console/login\?next=%2Fconsole%23%2Frecordings$"))
    assert errors == [], "the page's scripts threw"
