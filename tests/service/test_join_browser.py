"""The ``/join`` page end to end in real headless Chromium, whose fake microphone plays a speech file to the bot.

Chromium reads the file with ``--use-file-for-fake-audio-capture`` (and loops it), the page publishes it through a
real ``RTCPeerConnection`` to the service's aiortc endpoint over loopback, and the test checks what the bot recorded
against the file: the best alignment found by cross-correlation must be a strong match, and controls must not be.
The best lag moved by ~8 ms across a wrap of Chromium's loop (measured): one whole utterance is matched, not the loop.
"""

from __future__ import annotations

import contextlib
import json
import re
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import soxr
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, Route, expect, sync_playwright

from mediabot.audio import SAMPLE_RATE
from mediabot.sandbox import SandboxServer
from tests.service.conftest import API_KEY, ServiceServer, wait_for
from tests.service.pages import CHROMIUM_ARGS, chromium_path

SPEECH = Path(__file__).resolve().parents[1] / "fixtures" / "speech"
UTTERANCE = SPEECH / "austen_0930.wav"  # "he might even have been made amiable himself", speech 0.27-3.04 s
OTHER_UTTERANCE = SPEECH / "austen_0880.wav"  # same reader, other words: the control
UTTERANCE_SPEECH_S = 3.04 - 0.27
UTTERANCE_WORDS = {"he", "might", "even", "have", "been", "made", "amiable", "himself"}
GAP_S = 1.2  # digital silence after the utterance in the looped file, so the bot's VAD closes a segment every loop
CAPTURE_RATE = 48000  # the rate of the file Chromium reads (WebRTC's native rate; the bot records 16 kHz)
# Telephone band: where Opus keeps the waveform. Below it the encoder's VOIP-mode high-pass turns the phase (measured:
# +1 rad at 50-100 Hz, coherence still 0.99; the same path with PCMU correlates 0.99 full band, so it is not Chromium's
# capture), above it the codec's coarser high band does. The full-band figure is checked too, more loosely.
BAND_HZ = (300.0, 3400.0)
MIN_BAND_CORRELATION = 0.95  # measured 0.980-0.981
MIN_FULL_CORRELATION = 0.7  # measured 0.804-0.806
MAX_CONTROL_CORRELATION = 0.35  # measured 0.09-0.18 (time-reversed input, another utterance of the same reader)
LAUNCH_ARGS = [*CHROMIUM_ARGS, "--use-fake-device-for-media-stream", "--allow-loopback-in-peer-connection"]


def _read_wav(path: Path) -> tuple[int, npt.NDArray[np.int16]]:
    with wave.open(str(path), "rb") as wav:
        assert (wav.getnchannels(), wav.getsampwidth()) == (1, 2), f"{path} is not mono 16-bit PCM"
        return wav.getframerate(), np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16)


def _at_16k(rate: int, samples: npt.NDArray[np.int16]) -> npt.NDArray[np.float64]:
    data = samples.astype(np.float64)
    return data if rate == SAMPLE_RATE else np.asarray(soxr.resample(data, rate, SAMPLE_RATE), dtype=np.float64)


def _band(signal: npt.NDArray[np.float64], low: float, high: float) -> npt.NDArray[np.float64]:
    """Zero-phase band-pass (an FFT mask), so both signals are filtered alike and no delay is added."""
    spectrum = np.fft.rfft(signal)
    freqs = np.fft.rfftfreq(signal.size, 1 / SAMPLE_RATE)
    spectrum[(freqs < low) | (freqs > high)] = 0
    return np.fft.irfft(spectrum, signal.size)


def best_alignment(recording: npt.NDArray[np.float64], reference: npt.NDArray[np.float64]) -> tuple[float, int]:
    """The highest normalised correlation of ``reference`` placed wholly inside ``recording``, and its lag (samples).

    At each lag the correlation coefficient is taken over the overlap, ``Σ r·x / √(Σ r² · Σ x²)``: 1 for the same
    waveform at any gain. The numerator of every lag comes from one FFT cross-correlation, the windowed energies of
    the recording from a cumulative sum.
    """
    n, m = recording.size, reference.size
    assert n >= m, "the recording is shorter than the reference"
    size = 1 << int(np.ceil(np.log2(n + m)))
    products = np.fft.irfft(np.fft.rfft(recording, size) * np.conj(np.fft.rfft(reference, size)), size)[: n - m + 1]
    energy = np.concatenate(([0.0], np.cumsum(recording * recording)))
    windows = energy[m:] - energy[: n - m + 1]
    correlation = products / np.sqrt(np.maximum(windows * float(reference @ reference), 1e-12))
    lag = int(np.argmax(correlation))
    return float(correlation[lag]), lag


@pytest.fixture(scope="module")
def capture_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fake microphone's file: the utterance then silence, as 48 kHz mono 16-bit PCM."""
    rate, speech = _read_wav(UTTERANCE)
    looped = np.concatenate([speech, np.zeros(int(GAP_S * rate), np.int16)]).astype(np.float64)
    resampled = soxr.resample(looped, rate, CAPTURE_RATE)
    path = tmp_path_factory.mktemp("capture") / "speech-48k.wav"
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(CAPTURE_RATE)
        wav.writeframes(np.clip(np.round(resampled), -32768, 32767).astype(np.int16).tobytes())
    return path


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(playwright: Playwright, capture_file: Path) -> Iterator[Browser]:
    """Headless Chromium whose fake microphone plays ``capture_file`` (each context grants the microphone or not)."""
    browser = playwright.chromium.launch(
        executable_path=chromium_path(), args=[*LAUNCH_ARGS, f"--use-file-for-fake-audio-capture={capture_file}"]
    )
    yield browser
    browser.close()


@contextlib.contextmanager
def _running(sandbox: SandboxServer, output: Path, transcriber: str) -> Iterator[ServiceServer]:
    server = ServiceServer(sandbox, output_dir=output, media_ice_loopback=True, transcriber=transcriber).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def service(sandbox: SandboxServer, tmp_path: Path) -> Iterator[ServiceServer]:
    """The service with loopback ICE candidates and no transcription."""
    with _running(sandbox, tmp_path, "none") as server:
        yield server


@pytest.fixture
def transcribing_service(sandbox: SandboxServer, tmp_path: Path) -> Iterator[ServiceServer]:
    """The same with the offline recogniser, so transcript lines reach the page."""
    with _running(sandbox, tmp_path, "pocketsphinx") as server:
        yield server


def _context(browser: Browser, microphone: bool = True) -> BrowserContext:
    # Granting the permission here (rather than --use-fake-ui-for-media-stream) lets one browser also deny it.
    return browser.new_context(ignore_https_errors=True, permissions=["microphone"] if microphone else [])


def _open_join(context: BrowserContext, service: ServiceServer) -> Page:
    """Open /join signed out, sign in through the login form it sends us to, and land back on /join."""
    page = context.new_page()
    page.on("console", lambda message: print(f"browser console {message.type}: {message.text}"))
    page.goto(f"{service.base_url}/join")
    page.wait_for_url(re.compile(r"/console/login\?next="))
    page.fill("#api_key", API_KEY)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"/join$"))
    expect(page.get_by_test_id("join")).to_be_enabled()
    return page


def _session(service: ServiceServer, session_id: str) -> dict[str, Any]:
    response = service.client.get(f"/v1/sessions/{session_id}")
    return response.json() if response.status_code == 200 else {}


def _main_source(view: dict[str, Any]) -> dict[str, Any]:
    return next((s for s in view.get("sources", []) if s["source_id"] == "main"), {})


def test_join_publishes_the_microphone_and_the_recording_matches_it(
    browser: Browser, transcribing_service: ServiceServer, tmp_path: Path
) -> None:
    service = transcribing_service
    context = _context(browser)
    try:
        page = _open_join(context, service)
        page.get_by_test_id("join").click()
        expect(page.get_by_test_id("status")).to_have_attribute("data-state", "connected", timeout=20_000)
        session_id = page.get_by_test_id("session-id").text_content() or ""
        assert session_id, "the page shows no session id"
        expect(page.get_by_test_id("mic-level")).to_have_attribute("data-dbfs", re.compile(r"^-[0-4]?\d\.\d$"))
        page.wait_for_function("() => document.getElementById('remote').srcObject?.getAudioTracks().length > 0")
        expect(page.get_by_test_id("speaking")).to_have_attribute("data-speaking", "true", timeout=10_000)
        expect(page.get_by_test_id("segments")).not_to_have_text("0", timeout=15_000)
        # The first segment's transcript comes back through the bot's view of the session.
        expect(page.get_by_test_id("transcript").locator("li")).not_to_have_count(0, timeout=20_000)
        expect(page.get_by_test_id("transcript").locator("li").first).to_have_text(re.compile(r"^0:\d\d \w+"))

        # Publish until the recording surely holds one whole utterance after the loop position it started at.
        rate, speech = _read_wav(UTTERANCE)
        loop_s = speech.size / rate + GAP_S
        wanted_s = loop_s + speech.size / rate + 0.5
        wait_for(
            lambda: (
                (view := _session(service, session_id)).get("position_s", 0) >= wanted_s
                and _main_source(view).get("speaking_s", 0) >= UTTERANCE_SPEECH_S
            ),
            f"the bot to hear {wanted_s:.1f} s of audio",
            timeout=30,
        )
        view = _session(service, session_id)
        source = _main_source(view)
        assert source["codec"] == "audio/opus"
        assert source["connected"] is True
        assert view["standalone"] is True

        page.get_by_test_id("leave").click()
        expect(page.get_by_test_id("done")).to_be_visible(timeout=15_000)
        expect(page.get_by_test_id("done")).to_have_attribute("data-ended", "true")
        expect(page.get_by_test_id("status")).to_have_attribute("data-state", "left")
        expect(page.get_by_test_id("speaking")).to_have_attribute("data-speaking", "false")
        expect(page.get_by_test_id("done-session")).to_have_text(session_id)
        expect(page.get_by_test_id("done-folder")).to_have_text(session_id)
        expect(page.get_by_test_id("recording-link")).to_have_attribute("href", f"/console#/recordings/{session_id}")
        expect(page.get_by_test_id("join")).to_be_enabled()
    finally:
        context.close()

    folder = tmp_path / session_id
    call_json = folder / "call.json"
    wait_for(
        lambda: call_json.is_file() and json.loads(call_json.read_text())["complete"] is True,
        "the session's call.json to say complete",
    )
    metadata = json.loads(call_json.read_text())
    assert metadata["session_id"] == session_id
    assert metadata["call_id"] is None
    segments = [json.loads(line) for line in (folder / "segments.jsonl").read_text().splitlines()]
    assert segments, "the bot found no speech segment"
    assert {s["source_id"] for s in segments} == {"main"}
    assert (folder / "audio" / "mixed.wav").is_file()
    # What the recogniser made of every segment (the first and last are cut by where the loop was): intelligible.
    transcript = folder / "transcript.json"
    wait_for(transcript.is_file, "the session's transcript")
    heard = " ".join(entry["text"] for entry in json.loads(transcript.read_text())["entries"])
    print(f"transcribed: {heard!r}")
    assert len(UTTERANCE_WORDS & set(heard.split())) >= 4, heard  # measured: 5 or 6 of the 8 words

    recorded_rate, recorded = _read_wav(folder / "audio" / "main.wav")
    assert recorded_rate == SAMPLE_RATE
    recording = _at_16k(recorded_rate, recorded)
    reference = _at_16k(rate, speech)
    _, other = _read_wav(OTHER_UTTERANCE)
    controls = {"time-reversed": reference[::-1], "another utterance": _at_16k(rate, other)}

    low, high = BAND_HZ
    recording_band = _band(recording, low, high)
    band_match, band_lag = best_alignment(recording_band, _band(reference, low, high))
    full_match, full_lag = best_alignment(recording, reference)
    band_controls = {name: best_alignment(recording_band, _band(x, low, high))[0] for name, x in controls.items()}
    full_controls = {name: best_alignment(recording, x)[0] for name, x in controls.items()}
    print(
        f"recording {recording.size / SAMPLE_RATE:.2f} s; {low:.0f}-{high:.0f} Hz: {band_match:.3f} at lag {band_lag}; "
        f"full band: {full_match:.3f} at lag {full_lag}; controls {band_controls} / {full_controls}"
    )
    assert band_match > MIN_BAND_CORRELATION
    assert full_match > MIN_FULL_CORRELATION
    assert abs(band_lag - full_lag) <= 2, "the two bands disagree on where the utterance is"
    for name in controls:
        assert band_controls[name] < MAX_CONTROL_CORRELATION, name
        assert full_controls[name] < MAX_CONTROL_CORRELATION, name


def test_join_shows_the_whip_refusal_and_ends_the_session(browser: Browser, service: ServiceServer) -> None:
    def wrong_token(route: Route) -> None:
        route.continue_(headers={**route.request.headers, "authorization": "Bearer not-this-sessions-token"})

    context = _context(browser)
    try:
        page = _open_join(context, service)
        page.route(re.compile(r"/media/whip/[^/?]+\?source=main$"), wrong_token)
        page.get_by_test_id("join").click()
        expect(page.get_by_test_id("status")).to_have_attribute("data-state", "failed")
        error = page.get_by_test_id("error")
        expect(error).to_be_visible()
        expect(error).to_contain_text("HTTP 401")
        expect(error).to_contain_text("the bearer token is missing or is not this session's")
        session_id = page.get_by_test_id("session-id").text_content() or ""
        assert session_id
        expect(page.get_by_test_id("join")).to_be_enabled()
        expect(page.get_by_test_id("leave")).to_be_disabled()
    finally:
        context.close()
    # The page ended the session nobody could publish to instead of leaving it open.
    wait_for(lambda: service.client.get(f"/v1/sessions/{session_id}").status_code == 404, "the session to be ended")


def test_join_reports_a_denied_microphone(browser: Browser, service: ServiceServer) -> None:
    context = _context(browser, microphone=False)
    try:
        page = _open_join(context, service)
        page.get_by_test_id("join").click()
        expect(page.get_by_test_id("status")).to_have_attribute("data-state", "failed")
        expect(page.get_by_test_id("error")).to_contain_text("The microphone is not available (NotAllowedError)")
        expect(page.get_by_test_id("join")).to_be_enabled()
    finally:
        context.close()
    assert service.client.get("/v1/live").json()["sessions"] == [], "a session was opened without a microphone"
