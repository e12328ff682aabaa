"""WHIP (RFC 9725) on aiortc: check an SDP offer, answer it with a peer connection, and the errors a client sees.

The service's route maps each :class:`WhipError` to its HTTP status: an unknown session 404, a wrong bearer 401, a
malformed or oversized offer 400, an offer without a usable audio codec 422 (naming what it offered and what we take).
Audio is received as Opus or PCMU; other media sections are answered ``inactive`` so nothing decodes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable
from dataclasses import dataclass

from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpReceiver, RTCSessionDescription
from aiortc.exceptions import OperationError
from aiortc.mediastreams import MediaStreamTrack
from aiortc.rtcrtptransceiver import RTCRtpTransceiver
from aiortc.sdp import SessionDescription

from mediabot._errors import MediaError

__all__ = [
    "ACCEPTED_CODECS",
    "OfferInfo",
    "WhipBadOffer",
    "WhipError",
    "WhipNotFound",
    "WhipUnauthorized",
    "WhipUnsupported",
    "answer_offer",
    "check_offer",
    "close_peer",
]

logger = logging.getLogger(__name__)

ACCEPTED_CODECS = ("audio/opus", "audio/PCMU")
PEER_CLOSE_S = 5.0  # aiortc closes a peer connection in a few loop turns; past this it is waiting for a dead task


class WhipError(MediaError):
    """A WHIP request the endpoint refuses; ``status`` is the HTTP status to answer with."""

    status = 400


class WhipNotFound(WhipError):
    """No such media session or WHIP resource."""

    status = 404


class WhipUnauthorized(WhipError):
    """The bearer token is missing or not the session's."""

    status = 401


class WhipBadOffer(WhipError):
    """The body is not a usable SDP offer (malformed, oversized, not UTF-8 or with a NUL, no audio)."""

    status = 400


class WhipUnsupported(WhipError):
    """The offer's audio has no codec we take (Opus or PCMU)."""

    status = 422


@dataclass(frozen=True, slots=True)
class OfferInfo:
    """What an offer carries: the audio codecs offered (MIME types, in order), its media kinds, and the SSRCs its
    audio declares (``a=ssrc``; empty when the sender leaves them unsignaled)."""

    audio_codecs: tuple[str, ...]
    kinds: tuple[str, ...]
    ssrcs: frozenset[int] = frozenset()


def check_offer(body: bytes, max_bytes: int) -> tuple[str, OfferInfo]:
    """Validate an offer body: size, UTF-8 without NUL, SDP syntax, an audio section with Opus or PCMU, ICE
    credentials and a DTLS fingerprint. Returns the text."""
    if len(body) > max_bytes:
        raise WhipBadOffer(f"the SDP offer is {len(body)} bytes; at most {max_bytes} are accepted")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise WhipBadOffer("the SDP offer is not UTF-8 text") from exc
    if "\x00" in text:
        # SDP's grammar has no NUL anywhere; aiortc would take one into an ICE username or a codec name.
        raise WhipBadOffer("the SDP offer has a NUL byte")
    if not text.lstrip().startswith("v=0"):
        raise WhipBadOffer("the body is not an SDP offer (it must start with 'v=0')")
    try:
        parsed = SessionDescription.parse(text)
    except Exception as exc:
        # A pure parser over untrusted text: whatever it raises (aiortc validates with assert) is a malformed offer.
        raise WhipBadOffer(f"the SDP offer does not parse: {type(exc).__name__} {exc}".rstrip()) from exc
    kinds = tuple(media.kind for media in parsed.media)
    audio = [media for media in parsed.media if media.kind == "audio"]
    if not audio:
        raise WhipBadOffer("the SDP offer has no audio section")
    offered = tuple(codec.mimeType for media in audio for codec in media.rtp.codecs)
    if not any(mime.lower() == accepted.lower() for mime in offered for accepted in ACCEPTED_CODECS):
        names = ", ".join(dict.fromkeys(offered)) or "none"
        raise WhipUnsupported(f"no usable audio codec: the offer has {names}; mediabot takes Opus or PCMU")
    for media in parsed.media:
        if media.ice is None or not media.ice.usernameFragment or not media.ice.password:
            raise WhipBadOffer("the SDP offer has no ICE credentials (a=ice-ufrag / a=ice-pwd)")
        if not media.dtls or not media.dtls.fingerprints:
            raise WhipBadOffer("the SDP offer has no DTLS fingerprint (a=fingerprint)")
    ssrcs = frozenset(info.ssrc for media in audio for info in media.ssrc)
    return text, OfferInfo(audio_codecs=offered, kinds=kinds, ssrcs=ssrcs)


def _audio_preferences() -> list[object]:
    capabilities = RTCRtpReceiver.getCapabilities("audio")
    assert capabilities is not None
    return [codec for codec in capabilities.codecs if codec.mimeType.lower() in {c.lower() for c in ACCEPTED_CODECS}]


async def answer_offer(
    offer_sdp: str, *, send_track: MediaStreamTrack | None = None
) -> tuple[RTCPeerConnection, RTCRtpTransceiver, str]:
    """Answer a checked offer: the peer connection, its audio transceiver, and the answer SDP (ICE gathered).

    With ``send_track`` the audio is answered ``sendrecv`` and the track is what we send; otherwise ``recvonly``.
    The caller owns the connection (and closes it).
    """
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        # aiortc picks the codecs inside setRemoteDescription, from the transceiver the offer's audio section lands
        # on: make that transceiver first, with our preferences, so the answer offers only Opus and PCMU.
        audio = pc.addTransceiver("audio", direction="sendrecv" if send_track is not None else "recvonly")
        audio.setCodecPreferences(_audio_preferences())  # type: ignore[arg-type]
        if send_track is not None:
            audio.sender.replaceTrack(send_track)
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
        except (ValueError, KeyError, TypeError, AttributeError, IndexError, AssertionError) as exc:
            raise WhipBadOffer(f"the SDP offer was refused: {type(exc).__name__} {exc}".rstrip()) from exc
        except OperationError as exc:
            raise WhipUnsupported(f"the offer could not be answered: {exc}") from exc
        if audio.mid is None:
            raise WhipBadOffer("the SDP offer has no audio section")
        for transceiver in pc.getTransceivers():
            if transceiver is not audio:
                transceiver.direction = "inactive"
        try:
            answer = await pc.createAnswer()
            await pc.setLocalDescription(answer)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise WhipUnsupported(f"the offer could not be answered: {exc}") from exc
        local = pc.localDescription
        return pc, audio, local.sdp
    except BaseException:
        await close_peer(pc)
        raise


async def close_peer(pc: RTCPeerConnection, timeout_s: float = PEER_CLOSE_S) -> bool:
    """Close ``pc``; True if aiortc's own close finished within ``timeout_s``.

    aiortc's close stops each receiver and sender by waiting for their RTP and RTCP tasks to say they exited; a task
    that died of an exception never says so, and the close would wait forever (and with it a WHIP DELETE, a call's
    end, a shutdown). Past ``timeout_s`` that close is abandoned: the receivers' decoder threads are ended and the
    senders and DTLS and ICE transports stopped directly, each bounded the same way, so the connection's threads and
    sockets are released all the same.
    """
    closing = asyncio.ensure_future(pc.close())
    done, _ = await asyncio.wait({closing}, timeout=timeout_s)
    if done:
        closing.result()
        return True
    closing.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await closing
    logger.warning("media: a peer connection was still closing after %.0f s; its transports were stopped", timeout_s)
    for transceiver in pc.getTransceivers():
        # aiortc's receiver runs its decoder on a thread that only its stop ends; a thread left waiting would keep
        # the process from exiting.
        with contextlib.suppress(Exception):
            getattr(transceiver.receiver, "_handle_disconnect", lambda: None)()
        dtls = transceiver.receiver.transport
        steps: list[Awaitable[None]] = [transceiver.sender.stop(), dtls.stop(), dtls.transport.stop()]
        for step in steps:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(step, timeout_s)
    return False
