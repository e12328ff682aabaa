"""WHIP offers answered by aiortc: only Opus and PCMU are ever answered, whatever else the offer lists."""

from __future__ import annotations

from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender

from mediabot.media.whip import answer_offer


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
