"""WHIP offers answered by aiortc: only Opus and PCMU are ever answered, whatever else the offer lists; and a peer
connection is closed even when aiortc's own close would wait forever."""

from __future__ import annotations

import asyncio
import threading

import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender

from mediabot.media.whip import WhipBadOffer, answer_offer, check_offer, close_peer

from .conftest import connected_pair


async def offer(codecs: list[str] | None = None) -> tuple[RTCPeerConnection, str]:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    transceiver = pc.addTransceiver("audio", direction="sendonly")
    if codecs is not None:
        capabilities = RTCRtpSender.getCapabilities("audio")
        assert capabilities is not None
        transceiver.setCodecPreferences([c for c in capabilities.codecs if c.mimeType in codecs])
    await pc.setLocalDescription(await pc.createOffer())
    return pc, pc.localDescription.sdp


def answered_codecs(sdp: str) -> list[str]:
    return [line.split(" ", 1)[1].split("/")[0] for line in sdp.splitlines() if line.startswith("a=rtpmap:")]


async def test_an_offer_of_every_codec_is_answered_with_opus_and_pcmu_only() -> None:
    publisher, sdp = await offer()
    assert {"G722", "PCMA"} <= set(answered_codecs(sdp))  # what aiortc offers by default
    pc, transceiver, answer = await answer_offer(sdp)
    try:
        assert answered_codecs(answer) == ["opus", "PCMU"]
        assert transceiver.kind == "audio" and transceiver.direction == "recvonly"
    finally:
        await pc.close()
        await publisher.close()


async def test_without_opus_the_answer_is_pcmu_not_another_codec_listed_first() -> None:
    publisher, sdp = await offer(["audio/G722", "audio/PCMU"])
    pc, _, answer = await answer_offer(sdp)
    try:
        assert answered_codecs(answer) == ["PCMU"]
    finally:
        await pc.close()
        await publisher.close()


# -- found by fuzzing the service (tests/service/test_fuzz.py) --------------------------------------------------------


def _replace(sdp: str, prefix: str, line: str) -> bytes:
    return "".join(line + "\r\n" if old.startswith(prefix) else old for old in sdp.splitlines(keepends=True)).encode()


@pytest.mark.parametrize(
    ("prefix", "line"),
    [
        # aiortc checks these with assert: the AssertionError was a 500.
        ("a=candidate:", "a=candidate:1 1 udp 2130706431 192.0.2.1"),
        ("m=audio", "m=audio 9 UDP/TLS/RTP/SAVPF 300"),
        ("m=audio", "m=audio 9 UDP/TL"),
        ("m=audio", "m=audio  9  UDP/TLS/RTP/SAVPF  96"),
        ("c=", "c=IN IP4 "),
        ("c=", "c=IN  IP4  192.0.2.2"),
        ("a=rtcp:", "a=rtcp:9 IN"),
    ],
)
async def test_sdp_aiortc_asserts_on_is_a_bad_offer_not_a_crash(prefix: str, line: str) -> None:
    publisher, sdp = await offer()
    await publisher.close()
    with pytest.raises(WhipBadOffer, match="does not parse"):
        check_offer(_replace(sdp, prefix, line), 65_536)


async def test_an_offer_with_a_nul_byte_is_refused() -> None:
    # aiortc took "\x00XPnM" as the ICE username fragment and answered.
    publisher, sdp = await offer()
    await publisher.close()
    with pytest.raises(WhipBadOffer, match="NUL"):
        check_offer(sdp.replace("a=ice-ufrag:", "a=ice-ufrag:\x00").encode(), 65_536)
    text, info = check_offer(sdp.encode(), 65_536)
    assert text == sdp and "audio/opus" in info.audio_codecs


async def test_a_healthy_peer_connection_closes_through_aiortc() -> None:
    pair = await connected_pair()
    publisher, bot, audio = pair.publisher, pair.bot, pair.audio
    try:
        assert await close_peer(bot) is True
        assert bot.connectionState == "closed" and audio.receiver.transport.state == "closed"
    finally:
        await publisher.close()


async def test_a_close_that_would_wait_forever_still_releases_the_transports(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    decoders = {t for t in threading.enumerate() if t.name == "audio-decoder"}  # other tests' are not ours
    pair = await connected_pair()
    publisher, bot, audio = pair.publisher, pair.bot, pair.audio
    never = asyncio.Event()

    async def stuck() -> None:  # what the stop of a receiver whose RTCP task died did: wait for an exit that never came
        await never.wait()

    monkeypatch.setattr(audio.receiver, "stop", stuck)
    try:
        assert await close_peer(bot, timeout_s=0.5) is False
        dtls = audio.receiver.transport
        assert dtls.state == "closed" and dtls.transport.state == "closed"
        left = [t for t in threading.enumerate() if t.name == "audio-decoder" and t not in decoders]
        assert not left  # a decoder thread left waiting would keep the process from exiting
        assert "still closing" in caplog.text
    finally:
        await publisher.close()


def test_the_ssrcs_an_offer_declares_are_read_from_its_audio_section() -> None:
    offer = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"
    offer += "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\n"
    offer += "a=ice-ufrag:abcd\r\na=ice-pwd:0123456789abcdef01234567\r\n"
    offer += "a=fingerprint:sha-256 " + ":".join(["AB"] * 32) + "\r\na=setup:actpass\r\n"
    offer += "a=rtpmap:111 opus/48000/2\r\na=ssrc:1234 cname:x\r\na=ssrc:1234 msid:a b\r\na=ssrc:99 cname:x\r\n"
    assert check_offer(offer.encode(), 4096)[1].ssrcs == {1234, 99}
    assert check_offer(offer.split("a=ssrc")[0].encode(), 4096)[1].ssrcs == set()
