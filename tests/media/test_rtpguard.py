"""The receiver guard on real connected aiortc peers: one sending source is followed, RTP from other SSRCs is dropped
before aiortc's tables learn them, and a receiver report that cannot be built is skipped instead of ending the
receiver's RTCP task."""

from __future__ import annotations

import logging

import pytest
from aiortc.rtp import RtcpReceiverInfo, RtcpRrPacket, RtpPacket

from mediabot.media.receive import payload_codecs
from mediabot.media.whip import close_peer

from .conftest import AnsweredPair, connected_pair


def rtp(ssrc: int, pt: int) -> RtpPacket:
    return RtpPacket(payload_type=pt, sequence_number=1, timestamp=960, ssrc=ssrc, payload=b"\xf8\xff\xfe")


def opus_pt(pair: AnsweredPair) -> int:
    return next(pt for pt, mime in payload_codecs(pair.bot.localDescription.sdp).items() if mime == "audio/opus")


def report(ssrc: int, jitter: int = 0) -> RtcpReceiverInfo:
    return RtcpReceiverInfo(
        ssrc=ssrc, fraction_lost=0, packets_lost=0, highest_sequence=0, jitter=jitter, lsr=0, dlsr=0
    )


async def closed(pair: AnsweredPair) -> None:
    await close_peer(pair.bot)
    await pair.publisher.close()


async def test_a_declared_ssrc_is_followed_and_strangers_are_dropped_before_the_router_learns_them() -> None:
    pair = await connected_pair()
    try:
        guard, router, pt = pair.guard, pair.audio.receiver.transport._rtp_router, opus_pt(pair)
        own = pair.publisher.getSenders()[0]._ssrc
        assert guard is not None and guard.ssrcs == {own}
        assert router.route_rtp(rtp(own, pt)) is pair.audio.receiver
        assert all(router.route_rtp(rtp(ssrc, pt)) is None for ssrc in range(1, 101))
        assert guard.foreign == 100 and guard.ssrcs == {own}
        assert set(router.ssrc_table) <= {own}
    finally:
        await closed(pair)


async def test_an_unsignaled_sender_is_pinned_to_the_first_ssrc_that_arrives() -> None:
    pair = await connected_pair(declare_ssrc=False)
    try:
        guard, router, pt = pair.guard, pair.audio.receiver.transport._rtp_router, opus_pt(pair)
        assert guard is not None and guard.ssrcs == set()
        assert router.route_rtp(rtp(4242, pt)) is pair.audio.receiver
        assert router.route_rtp(rtp(4243, pt)) is None
        assert router.route_rtp(rtp(4242, pt)) is pair.audio.receiver
        assert guard.ssrcs == {4242} and guard.foreign == 1
    finally:
        await closed(pair)


async def test_a_report_that_cannot_be_built_is_skipped_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    pair = await connected_pair()
    try:
        assert pair.guard is not None
        too_big = [report(1, jitter=2**32)]  # wider than the report's 32-bit field
        too_many = [report(ssrc) for ssrc in range(80)]  # 80 blocks: bigger than SRTCP takes
        with caplog.at_level(logging.WARNING):
            await pair.audio.receiver._send_rtcp(RtcpRrPacket(ssrc=7, reports=too_big))  # struct.error inside aiortc
            await pair.audio.receiver._send_rtcp(RtcpRrPacket(ssrc=7, reports=too_many))  # SRTCP: packet is too long
        assert pair.guard.rtcp_unsent == 2
        assert len([r for r in caplog.records if "not sent" in r.getMessage()]) == 1  # the peer decides how often
        await pair.audio.receiver._send_rtcp(RtcpRrPacket(ssrc=7, reports=[]))  # a good one still goes out
        assert pair.guard.rtcp_unsent == 2
    finally:
        await closed(pair)
