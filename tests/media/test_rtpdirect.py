"""RTP straight from the socket, on real connected aiortc peers: what arrives is parsed as aiortc would (CSRCs,
header extension, padding), aiortc's RTCP statistics still count it, order is kept at the hand-over, and forged,
replayed, malformed or foreign packets are counted and dropped without an exception reaching the event loop."""

from __future__ import annotations

import asyncio
import types
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiortc.rtp import RtpPacket
from hypothesis import example, given
from hypothesis import strategies as st

from mediabot.media.receive import payload_codecs
from mediabot.media.rtpdirect import DirectRtp, direct_rtp
from mediabot.media.whip import close_peer

from .conftest import AnsweredPair, connected_pair


@dataclass
class Taken:
    """An :class:`~mediabot.media.rtpdirect.RtpSink` that keeps what it is given."""

    packets: list[tuple[int, int, int, bytes]] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def take(self, sequence: int, payload_type: int, timestamp: int, payload: bytes, arrival: float) -> None:
        self.packets.append((sequence, payload_type, timestamp, payload))
        self.changed.set()

    # aiortc's path hands the same sink RtpPackets through the jitter buffer's interface.
    def add(self, packet: RtpPacket) -> tuple[bool, None]:
        self.take(packet.sequence_number, packet.payload_type, packet.timestamp, packet._data, 0.0)
        return False, None


@dataclass
class Direct:
    pair: AnsweredPair
    direct: DirectRtp
    taken: Taken
    pt: int
    ssrc: int

    @property
    def publisher_dtls(self) -> Any:
        return self.pair.publisher.getSenders()[0].transport

    def packet(self, seq: int, payload: bytes = b"\xf8\xff\xfe", ssrc: int | None = None) -> RtpPacket:
        return RtpPacket(
            payload_type=self.pt, sequence_number=seq, timestamp=960 * seq, ssrc=ssrc or self.ssrc, payload=payload
        )

    async def send(self, raw: bytes) -> None:
        """Protect ``raw`` with the publisher's SRTP session and send it over the connection."""
        await self.publisher_dtls._send_rtp(raw)

    def send_datagram(self, datagram: bytes) -> None:
        """Send ``datagram`` as it is from the publisher's socket of the nominated pair."""
        pair = self.publisher_dtls.transport._connection._nominated[1]
        pair.protocol.transport.sendto(datagram, pair.remote_addr)

    async def settle(self, count: int) -> None:
        """Wait until the sink has ``count`` packets (a guard against a hang, not a timing)."""
        async with asyncio.timeout(10):
            while len(self.taken.packets) < count:
                self.taken.changed.clear()
                await self.taken.changed.wait()


@pytest.fixture
async def d() -> AsyncIterator[Direct]:
    """A connected pair whose bot side reads RTP directly into a :class:`Taken`; closed afterwards."""
    pair = await connected_pair()
    taken = Taken()
    receiver = pair.audio.receiver
    receiver._RTCRtpReceiver__jitter_buffer = taken  # aiortc's path, for what the direct path leaves to it
    direct = direct_rtp(receiver, taken, pair.guard)
    try:
        assert direct is not None and direct.active  # DTLS is up: it took the socket at once
        pt = next(pt for pt, mime in payload_codecs(pair.bot.localDescription.sdp).items() if mime == "audio/opus")
        yield Direct(pair, direct, taken, pt, pair.publisher.getSenders()[0]._ssrc)
    finally:
        if direct is not None:
            direct.stop()
        await close_peer(pair.bot)
        await pair.publisher.close()


async def test_packets_are_parsed_as_aiortc_would_and_still_counted_for_rtcp(d: Direct) -> None:
    plain = d.packet(1)
    extended = d.packet(2, payload=b"\x01\x02\x03\x04")
    extended.csrc = [11, 12]
    extended.extensions.mid = "0"  # a header extension aiortc writes
    padded = d.packet(3, payload=b"\x05\x06").serialize()
    padded = bytes([padded[0] | 0x20]) + padded[1:] + b"\x00\x00\x00\x04"  # 4 bytes of padding, count last
    for raw in (plain.serialize(), extended.serialize(d.publisher_dtls._rtp_header_extensions_map), padded):
        await d.send(raw)
    await d.settle(3)
    assert d.taken.packets == [
        (1, d.pt, 960, b"\xf8\xff\xfe"),
        (2, d.pt, 1920, b"\x01\x02\x03\x04"),
        (3, d.pt, 2880, b"\x05\x06"),
    ]
    assert d.direct.datagrams == 3 and d.direct.malformed == 0 and d.direct.unprotect_failed == 0
    stats = d.pair.audio.receiver._RTCRtpReceiver__remote_streams[d.ssrc]
    assert stats.packets_received == 3 and stats.max_seq == 3  # receiver reports and getStats stay true
    report = await d.pair.audio.receiver.getStats()
    inbound = [s for s in report.values() if s.type == "inbound-rtp"]
    assert inbound and inbound[0].packetsReceived == 3


async def test_forged_replayed_and_malformed_packets_are_counted_and_dropped(d: Direct) -> None:
    good = d.packet(1).serialize()
    protected = d.publisher_dtls._tx_srtp.protect(good)
    d.send_datagram(protected)
    d.send_datagram(protected)  # a replay: libsrtp refuses it
    d.send_datagram(protected[:-1] + bytes([protected[-1] ^ 1]))  # a forged tag
    d.send_datagram(b"\x80" + bytes(11))  # RTP-looking, not SRTP
    # Well protected, but its padding count is longer than the packet (libsrtp checks CSRCs and extensions
    # itself, on both sides, so a packet wrong in those is a forgery here).
    header = d.packet(5).serialize()[:12]
    d.send_datagram(d.publisher_dtls._tx_srtp.protect(bytes([header[0] | 0x20]) + header[1:] + b"\x01\xff"))
    await d.send(d.packet(9).serialize())  # the stream goes on
    await d.settle(2)
    assert [p[0] for p in d.taken.packets] == [1, 9]
    assert d.direct.unprotect_failed == 3
    assert d.direct.malformed == 1
    assert d.direct.datagrams == 6


async def test_a_foreign_ssrc_is_dropped_and_counted_by_the_guard(d: Direct) -> None:
    assert d.pair.guard is not None
    await d.send(d.packet(1, ssrc=424242).serialize())
    await d.send(d.packet(2).serialize())
    await d.settle(1)
    assert [p[0] for p in d.taken.packets] == [2]
    assert d.pair.guard.foreign == 1
    assert set(d.pair.audio.receiver._RTCRtpReceiver__remote_streams) == {d.ssrc}


async def test_order_is_kept_while_aiortc_still_has_older_datagrams_queued(d: Direct) -> None:
    connection = d.pair.audio.receiver.transport.transport._connection
    pair = connection._nominated[1]
    first = d.publisher_dtls._tx_srtp.protect(d.packet(1).serialize())
    second = d.publisher_dtls._tx_srtp.protect(d.packet(2).serialize())
    # As if the DTLS task had not read the first yet: the second must queue behind it, not overtake it.
    connection._queue.put_nowait((first, 1))
    pair.protocol.datagram_received(second, pair.remote_addr)
    assert d.direct.datagrams == 0
    await d.settle(2)
    assert [p[0] for p in d.taken.packets] == [1, 2]
    # Once the queue is empty, the direct path takes the next one.
    await d.send(d.packet(3).serialize())
    await d.settle(3)
    assert d.direct.datagrams == 1


async def test_stop_gives_the_socket_back_to_aiortc(d: Direct) -> None:
    d.direct.stop()
    await d.send(d.packet(1).serialize())
    await d.settle(1)
    assert d.direct.datagrams == 0 and d.taken.packets[0][0] == 1
    assert "datagram_received" not in vars(d.pair.audio.receiver.transport.transport._connection._nominated[1].protocol)


def test_an_aiortc_without_the_attributes_keeps_its_own_path() -> None:
    receiver = types.SimpleNamespace(transport=types.SimpleNamespace(state="connected"))
    assert direct_rtp(receiver, Taken(), None) is None  # type: ignore[arg-type]


def parser() -> tuple[DirectRtp, Taken]:
    """A :class:`DirectRtp` on a stand-in receiver (its codecs and RTCP statistics only), for the parse alone."""
    receiver = types.SimpleNamespace(
        transport=None,
        _RTCRtpReceiver__codecs={111: types.SimpleNamespace(clockRate=48000)},
        _RTCRtpReceiver__remote_streams={},
    )
    taken = Taken()
    return DirectRtp(receiver, taken, None), taken  # type: ignore[arg-type]


@given(st.binary(min_size=12, max_size=200), st.integers(0, 0x3F))
@example(bytes(12) + b"\x01\x00", 0x20)  # a padding count of 0: not even the count's own octet
@example(bytes(12) + b"\x00\x00\x00\x09" + bytes(4), 0x10)  # an extension longer than the packet
@example(bytes(12), 0x0F)  # 15 CSRCs announced, none there
def test_any_unprotected_packet_is_parsed_exactly_as_aiortc_parses_it_or_counted_malformed(
    body: bytes, flags: int
) -> None:
    plain = bytes([0x80 | flags]) + body[1:]  # version 2, as every datagram the direct path takes
    direct, taken = parser()
    direct._take(plain)
    try:
        packet = RtpPacket.parse(plain)
    except ValueError:
        assert direct.malformed == 1 and not taken.packets
        return
    assert direct.malformed == 0
    assert taken.packets == [(packet.sequence_number, packet.payload_type, packet.timestamp, packet.payload)]
