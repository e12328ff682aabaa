"""RTP straight from the socket: one connection's SRTP packets unprotected, parsed and decoded where they arrive.

aiortc 1.x takes every datagram through a chain built for the general case: aioice tries to parse it as STUN (an
exception for every RTP packet), puts it on the connection's ``asyncio.Queue``, the DTLS transport's reader task
wakes up for it, unprotects it, builds an :class:`aiortc.rtp.RtpPacket` (header extensions included), routes it by
SSRC and payload type, and hands it to the receiver's coroutine, which feeds the bitrate estimator, the RTCP
statistics and the depayloader before the packet reaches the :class:`~mediabot.media.receive.InlineAudioReceiver`.
Measured on the bot with 40 streams, that chain was about a third of the receive path's CPU.

:class:`DirectRtp` shortens it for one connection once DTLS is up. It replaces ``datagram_received`` on the
instance of aioice's protocol that carries the nominated candidate pair (its socket), and for each datagram that

- comes from the pair's remote address, is 12 to :data:`~mediabot.media.ice.MAX_DATAGRAM` bytes, and starts like
  RTP (RFC 7983's 128-191, and not an RTCP payload type, RFC 5761), and
- arrives while nothing older waits in aioice's queue (so packets keep their order),

it unprotects the packet with the DTLS transport's own SRTP session, parses the fixed header, skips CSRCs, header
extension and padding, keeps the connection pinned to its sending source (the
:class:`~mediabot.media.rtpguard.ReceiverGuard`'s SSRCs), updates aiortc's RTCP statistics for the stream (so its
receiver reports and ``getStats`` stay true), and hands ``(sequence, payload type, timestamp, payload)`` to the
inline receiver. Everything else — STUN, DTLS, RTCP, other addresses, anything odd — takes aioice's path as before.
A packet that fails SRTP (a forgery, a replay) or does not parse is counted and dropped; no exception leaves the
handler, whose caller is the event loop's socket callback.

The hooks read aiortc's and aioice's private attributes (the SRTP session, the ICE connection's queue and nominated
pair, the receiver's codecs and RTCP statistics) on this connection's objects only, checked first: when a release
lacks one, :func:`direct_rtp` returns ``None`` and the connection keeps aiortc's path.
"""

from __future__ import annotations

import logging
import struct
import time
from collections.abc import Callable
from typing import Any, Protocol

import pylibsrtp
from aiortc import RTCRtpReceiver
from aiortc.rtcrtpreceiver import StreamStatistics

from mediabot.media.ice import MAX_DATAGRAM
from mediabot.media.rtpguard import ReceiverGuard

__all__ = ["DirectRtp", "RtpSink", "direct_rtp"]

logger = logging.getLogger(__name__)

_HEADER = struct.Struct("!HII")  # sequence number, timestamp, SSRC (after the first two bytes)
_U16 = struct.Struct("!H")
_CODECS = "_RTCRtpReceiver__codecs"
_STREAMS = "_RTCRtpReceiver__remote_streams"


class RtpSink(Protocol):
    """Where parsed packets go: :meth:`mediabot.media.receive.InlineAudioReceiver.take`'s signature."""

    def take(self, sequence: int, payload_type: int, timestamp: int, payload: bytes, arrival: float) -> None:
        """Take one packet's fields."""


class _Seen:
    """What :meth:`aiortc.rtcrtpreceiver.StreamStatistics.add` reads of a packet (one reused instance)."""

    __slots__ = ("sequence_number", "timestamp")

    def __init__(self) -> None:
        self.sequence_number = 0
        self.timestamp = 0


class DirectRtp:
    """One connection's RTP taken from its socket once DTLS is up (see the module's description)."""

    def __init__(
        self,
        receiver: RTCRtpReceiver,
        inline: RtpSink,
        guard: ReceiverGuard | None,
        *,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self.inline = inline
        self.guard = guard
        self.datagrams = 0  # RTP datagrams this path took
        self.unprotect_failed = 0  # SRTP refused them: forged, replayed, or not SRTP at all
        self.malformed = 0  # unprotected, but not a well-formed RTP packet
        self.active = False
        self._dtls = receiver.transport
        # The receiver's codecs and per-SSRC RTCP statistics: dicts it keeps for its lifetime.
        self._codecs: dict[int, Any] = getattr(receiver, _CODECS)
        self._streams: dict[int, StreamStatistics] = getattr(receiver, _STREAMS)
        self._now = now
        self._seen = _Seen()
        self._protocol: Any = None

    def start(self) -> bool:
        """Take the nominated pair's datagrams (call once DTLS is connected); ``False`` if there is none to take."""
        if self.active:
            return True
        srtp = getattr(self._dtls, "_rx_srtp", None)
        connection = getattr(getattr(self._dtls, "transport", None), "_connection", None)
        nominated = getattr(connection, "_nominated", None)
        queue = getattr(connection, "_queue", None)
        pair = nominated.get(1) if isinstance(nominated, dict) else None
        protocol = getattr(pair, "protocol", None)
        if srtp is None or queue is None or protocol is None or not hasattr(protocol, "datagram_received"):
            return False
        host, port = pair.remote_addr  # type: ignore[union-attr]
        self._protocol = protocol
        self._install(protocol, srtp, queue._queue, host, port)
        self.active = True
        return True

    def stop(self) -> None:
        """Give the socket's datagrams back to aioice (idempotent)."""
        if self.active and self._protocol is not None:
            vars(self._protocol).pop("datagram_received", None)
        self.active = False

    def _install(self, protocol: Any, srtp: pylibsrtp.Session, waiting: Any, host: str, port: int) -> None:
        """``waiting``: aioice's queue's deque, non-empty while the DTLS task has datagrams still to read."""
        original: Callable[[bytes, tuple[Any, ...]], None] = protocol.datagram_received
        rtp = self._rtp

        def received(data: bytes, addr: tuple[Any, ...]) -> None:
            first = data[0] if data else 0
            if (
                127 < first < 192
                and 12 <= len(data) <= MAX_DATAGRAM
                and not 191 < data[1] < 224
                and not waiting
                and addr[1] == port
                and addr[0] == host
            ):
                rtp(srtp, data)
            else:
                original(data, addr)

        protocol.datagram_received = received

    def _rtp(self, srtp: pylibsrtp.Session, data: bytes) -> None:
        self.datagrams += 1
        try:
            plain = srtp.unprotect(data)
        except (pylibsrtp.Error, ValueError):
            self.unprotect_failed += 1
            return
        try:
            self._take(plain)
        except Exception:  # never into the event loop's socket callback
            self.malformed += 1

    def _take(self, plain: bytes) -> None:
        first = plain[0]
        size = len(plain)
        start = 12 + 4 * (first & 0x0F)
        if first & 0x10:  # a header extension: its length in 32-bit words follows its profile
            if start + 4 > size:
                self.malformed += 1
                return
            start += 4 + 4 * _U16.unpack_from(plain, start + 2)[0]
        end = size
        if first & 0x20:  # padding: its last octet counts it, itself included (RFC 3550 5.1), so never 0
            end -= plain[-1] or size + 1
        if start > end:
            self.malformed += 1
            return
        sequence, timestamp, ssrc = _HEADER.unpack_from(plain, 2)
        guard = self.guard
        if guard is not None:  # a well-formed packet pins an unsignaled connection, as aiortc's router would
            if not guard.ssrcs:
                guard.ssrcs.add(ssrc)
            elif ssrc not in guard.ssrcs:
                guard.foreign += 1
                return
        payload_type = plain[1] & 0x7F
        self._count(ssrc, payload_type, sequence, timestamp)
        self.inline.take(sequence, payload_type, timestamp, plain[start:end], self._now())

    def _count(self, ssrc: int, payload_type: int, sequence: int, timestamp: int) -> None:
        """Feed aiortc's RTCP statistics for the stream, as its receiver would (receiver reports, ``getStats``)."""
        stats = self._streams.get(ssrc)
        if stats is None:
            codec = self._codecs.get(payload_type)
            if codec is None:
                return
            stats = self._streams[ssrc] = StreamStatistics(codec.clockRate)
        seen = self._seen
        seen.sequence_number = sequence
        seen.timestamp = timestamp
        stats.add(seen)  # type: ignore[arg-type]


def direct_rtp(
    receiver: RTCRtpReceiver,
    inline: RtpSink,
    guard: ReceiverGuard | None,
    *,
    now: Callable[[], float] = time.monotonic,
) -> DirectRtp | None:
    """A :class:`DirectRtp` for ``receiver``'s connection, started when its DTLS transport connects; ``None`` (and
    nothing changed) if this aiortc lacks an attribute it needs."""
    dtls = receiver.transport
    if not all(hasattr(receiver, name) for name in (_CODECS, _STREAMS)) or not hasattr(dtls, "_rx_srtp"):
        return None
    direct = DirectRtp(receiver, inline, guard, now=now)

    @dtls.on("statechange")
    def _state() -> None:
        if dtls.state == "connected":
            if not direct.start():
                logger.debug("media: no nominated pair to read RTP from directly; aiortc's path stays")
        elif dtls.state in ("closed", "failed"):
            direct.stop()

    if dtls.state == "connected":
        direct.start()
    return direct
