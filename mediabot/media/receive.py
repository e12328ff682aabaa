"""Inline audio receive: RTP packets → a short reorder window → decode → the stream's pipeline, with no thread hop.

aiortc's stock audio receiver puts every RTP packet into a jitter buffer that holds four packets before it releases
one (80 ms added to every frame), stalls the stream behind a lost packet until 16 more have arrived, and hands each
complete frame to a decoder thread per stream, whose decoded frames come back to the event loop one
``run_coroutine_threadsafe`` at a time; it decodes Opus as 48 kHz stereo. Measured with 12 streams in one bot process,
the thread hop (queue, wake-up pipe, futures) took about 15 % of the receive path's CPU and the stereo decode about
40 % more than a mono one.

:class:`InlineAudioReceiver` takes the jitter buffer's place on one receiver (aiortc hands it every depayloaded RTP
packet of the stream, on the event loop, right after SRTP, through :meth:`InlineAudioReceiver.add`; once DTLS is up,
:mod:`mediabot.media.rtpdirect` hands it the packets straight from the socket through
:meth:`InlineAudioReceiver.take`), and instead

1. releases packets in sequence-number order the moment they are next in line; a packet after a gap waits at most
   :data:`REORDER_S` for the missing one, which is then counted lost (its time becomes silence in the pipeline);
2. decodes each packet on the spot — Opus as 48 kHz **mono** (the pipeline wants mono), G.711 as 8 kHz mono — with
   PyAV's decoders, and a packet that does not decode is counted and skipped;
3. pushes the samples, with the packet's RTP timestamp and arrival time, into the source's
   :class:`~mediabot.media.pipeline.StreamPipeline`.

Nothing reaches aiortc's decoder thread, which stays parked until the receiver stops and then ends the track as
usual. The hook uses one aiortc attribute, the receiver's ``__jitter_buffer``: :func:`attach` replaces it only when it
is the :class:`aiortc.jitterbuffer.JitterBuffer` this code was written against, and otherwise returns ``None`` so the
caller falls back to the stock path (a plain ``recv`` loop) and says so.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import av
import numpy as np
from aiortc import RTCRtpReceiver
from aiortc.jitterbuffer import JitterBuffer
from aiortc.rtp import RtpPacket
from aiortc.sdp import SessionDescription
from av.audio.codeccontext import AudioCodecContext

from mediabot.media import opus
from mediabot.media.opus import OpusDecoder, OpusError
from mediabot.media.pipeline import StreamPipeline
from mediabot.metrics import FRAME_DELAY

__all__ = ["REORDER_S", "InlineAudioReceiver", "ReceiveStats", "attach", "payload_codecs"]

logger = logging.getLogger(__name__)

REORDER_S = 0.06  # how long a packet after a gap waits for the missing one (3 packets of 20 ms)
MAX_HELD = 16  # packets held behind a gap at most, whatever their age
# A jump in sequence numbers past these (RFC 3550 A.1's limits) is a restarted sender, not loss or lateness.
MAX_DROPOUT = 3000
MAX_MISORDER = 100
_JITTER_ATTRIBUTE = "_RTCRtpReceiver__jitter_buffer"
_U16 = 1 << 16
_U32 = 1 << 32

# RTP payload codec (lower-case MIME type) → (PyAV decoder, decoding rate, channels): always mono.
_DECODERS = {
    "audio/opus": ("libopus", 48_000, 1),
    "audio/pcmu": ("pcm_mulaw", 8_000, 1),
    "audio/pcma": ("pcm_alaw", 8_000, 1),
}


_Packet = tuple[int, int, bytes, float]  # payload type, RTP timestamp, payload, arrival


@dataclass
class ReceiveStats:
    """What one receiver saw: packets in, decoded, released from the reorder hold, lost (never arrived in time),
    late, undecodable, of an unknown payload type, and sequence restarts."""

    packets: int = 0
    decoded: int = 0
    reordered: int = 0
    lost: int = 0
    late: int = 0
    undecodable: int = 0
    unknown_payload: int = 0
    restarts: int = 0


def payload_codecs(sdp: str) -> dict[int, str]:
    """Payload type → lower-case MIME type of the audio codecs a (local) session description uses."""
    parsed = SessionDescription.parse(sdp)
    return {
        codec.payloadType: codec.mimeType.lower()
        for media in parsed.media
        if media.kind == "audio"
        for codec in media.rtp.codecs
        if codec.payloadType is not None
    }


class _Decoder:
    """One codec's PyAV decoder, configured for mono s16 output."""

    def __init__(self, mime: str) -> None:
        name, rate, channels = _DECODERS[mime]
        context = cast(AudioCodecContext, av.CodecContext.create(name, "r"))
        context.format = "s16"
        context.layout = "mono" if channels == 1 else "stereo"
        context.sample_rate = rate
        self.context = context

    def decode(self, payload: bytes) -> list[av.AudioFrame]:
        """The frames one packet decodes to (Opus: one per 20 ms of the packet's duration)."""
        return self.context.decode(av.Packet(payload))


class InlineAudioReceiver:
    """Stands in for an aiortc receiver's jitter buffer: reorders, decodes and feeds the pipeline as packets arrive."""

    def __init__(
        self,
        pipeline: StreamPipeline,
        codecs: dict[int, str],
        *,
        now: Callable[[], float] = time.monotonic,
        on_failure: Callable[[BaseException], None] | None = None,
        reorder_s: float = REORDER_S,
        opus16: bool | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.codecs = {pt: mime for pt, mime in codecs.items() if mime in _DECODERS}
        opus16 = opus.available() if opus16 is None else opus16
        self.stats = ReceiveStats()
        self._now = now
        self._on_failure = on_failure
        self._reorder_s = reorder_s
        self._decoders: dict[str, _Decoder] = {}
        self._next: int | None = None  # extended sequence number of the next packet to release
        self._last_seq = 0
        self._ext = 0
        self._held: dict[int, _Packet] = {}
        self._held_since = 0.0
        self._failed = False
        self._opus16: OpusDecoder | None = OpusDecoder() if opus16 and "audio/opus" in self.codecs.values() else None
        self._ts_last: int | None = None  # the Opus stream's last RTP timestamp (48 kHz) and its unwrapped count
        self._ts_ext = 0

    # aiortc's receiver calls ``add`` for every depayloaded packet and would decode the frame it returns.
    def add(self, packet: RtpPacket) -> tuple[bool, None]:
        """Take one RTP packet (aiortc's jitter-buffer interface): no picture-loss flag, no frame for aiortc."""
        payload: bytes = getattr(packet, "_data", packet.payload)  # aiortc depayloads into ``_data``
        self.take(packet.sequence_number, packet.payload_type, packet.timestamp, payload, self._now())
        return False, None

    def take(self, sequence: int, payload_type: int, timestamp: int, payload: bytes, arrival: float) -> None:
        """Take one RTP packet's fields (its payload depayloaded), arrived at ``arrival`` (this receiver's clock)."""
        if self._failed:
            return
        try:
            self._add(sequence, (payload_type, timestamp, payload, arrival))
        except Exception as exc:  # a bug here must not stop the transport's reader, which called us
            self._fail(exc)

    def _fail(self, exc: Exception) -> None:
        self._failed = True
        logger.error("inline receive failed; the stream is ended", exc_info=exc)
        if self._on_failure is not None:
            self._on_failure(exc)

    def close(self) -> None:
        """The stream ended: release what is still held, in order (the gaps stay lost)."""
        if self._failed or self._next is None:
            return
        for seq in sorted(self._held):
            packet = self._held.pop(seq)
            self.stats.lost += seq - self._next
            self._deliver(*packet)
            self._next = seq + 1

    def expire(self) -> None:
        """Give up on missing packets whose wait is over even if nothing else arrives (a paused sender)."""
        if not self._held or self._failed or self._now() - self._held_since < self._reorder_s:
            return
        try:
            assert self._next is not None
            first = min(self._held)
            self.stats.lost += first - self._next
            self._next = first
            self._release()
        except Exception as exc:
            self._fail(exc)

    # -- internals ------------------------------------------------------------------------------------------------

    def _extend(self, seq: int) -> int:
        """16-bit sequence number → a monotonic count (wrap-around handled, either direction)."""
        delta = (seq - self._last_seq) % _U16
        if delta >= _U16 // 2:
            delta -= _U16
        self._last_seq = seq
        self._ext += delta
        return self._ext

    def _add(self, sequence: int, packet: _Packet) -> None:
        stats = self.stats
        stats.packets += 1
        now = packet[3]
        if self._next is None:
            self._last_seq = sequence
            self._next = self._ext = 0
        seq = self._extend(sequence)
        if not self._next - MAX_MISORDER <= seq <= self._next + MAX_DROPOUT:
            # The sender restarted its numbering: start over from this packet (its RTP timestamp places it).
            stats.restarts += 1
            self._held.clear()
            self._next = seq
        if seq < self._next:
            stats.late += 1  # its place was given up (or a duplicate)
            return
        if seq > self._next:
            if seq not in self._held:
                if not self._held:
                    self._held_since = now
                self._held[seq] = packet
            if len(self._held) < MAX_HELD and now - self._held_since < self._reorder_s:
                return
            # The missing packets are not coming in time: skip to the first held one.
            first = min(self._held)
            stats.lost += first - self._next
            self._next = first
        else:
            self._deliver(*packet)
            self._next += 1
        self._release()

    def _release(self) -> None:
        """Deliver the held packets that are now next in line."""
        held = self._held
        while held:
            assert self._next is not None
            item = held.pop(self._next, None)
            if item is None:
                self._held_since = min(packet[3] for packet in held.values())
                return
            self.stats.reordered += 1
            self._deliver(*item)
            self._next += 1

    def _deliver(self, payload_type: int, timestamp: int, payload: bytes, arrival: float) -> None:
        mime = self.codecs.get(payload_type)
        if mime is None:
            self.stats.unknown_payload += 1
            return
        if not payload:
            return
        if self._opus16 is not None and mime == "audio/opus":
            self._deliver_opus16(self._opus16, timestamp, payload, arrival)
            return
        decoder = self._decoders.get(mime)
        if decoder is None:
            decoder = self._decoders[mime] = _Decoder(mime)
        try:
            frames = decoder.decode(payload)
        except av.FFmpegError:
            self.stats.undecodable += 1
            return
        for frame in frames:
            count = frame.samples
            samples = np.frombuffer(memoryview(frame.planes[0]), dtype=np.int16, count=count)
            self.pipeline.push(timestamp, frame.sample_rate, 1, samples, arrival)
            timestamp = (timestamp + count) & 0xFFFFFFFF
        self.stats.decoded += 1
        FRAME_DELAY.observe(self._now() - arrival)

    def _deliver_opus16(self, decoder: OpusDecoder, timestamp: int, payload: bytes, arrival: float) -> None:
        """Opus through libopus at 16 kHz: the RTP timestamp (a 48 kHz clock) becomes a 16 kHz one for the pipeline.
        Opus frame sizes are whole multiples of 3 samples at 48 kHz, so the division is exact between packets."""
        try:
            samples = decoder.decode(payload)
        except OpusError:
            self.stats.undecodable += 1
            return
        if self._ts_last is None:
            self._ts_last = self._ts_ext = timestamp
        delta = (timestamp - self._ts_last) % _U32
        if delta >= _U32 // 2:
            delta -= _U32
        self._ts_last = timestamp
        self._ts_ext += delta
        self.pipeline.push((self._ts_ext // 3) % _U32, opus.RATE, 1, samples, arrival)
        self.stats.decoded += 1
        FRAME_DELAY.observe(self._now() - arrival)


def attach(
    receiver: RTCRtpReceiver,
    pipeline: StreamPipeline,
    codecs: dict[int, str],
    *,
    now: Callable[[], float] = time.monotonic,
    on_failure: Callable[[BaseException], None] | None = None,
) -> InlineAudioReceiver | None:
    """Put an :class:`InlineAudioReceiver` in ``receiver``'s jitter buffer's place; ``None`` if that isn't possible.

    Call it after the answer is set and before media flows. ``None`` means this aiortc does not have the attribute
    this hook was written against; the stock path then works as before.
    """
    if not isinstance(getattr(receiver, _JITTER_ATTRIBUTE, None), JitterBuffer):
        return None
    if not any(mime in _DECODERS for mime in codecs.values()):
        return None
    inline = InlineAudioReceiver(pipeline, codecs, now=now, on_failure=on_failure)
    setattr(receiver, _JITTER_ATTRIBUTE, inline)
    return inline
