"""Keep what an authenticated peer sends from breaking aiortc's receiver.

SRTP keeps strangers out, but the peer that holds a WHIP session's keys can still send anything inside it, and aiortc
1.x trusts it in two ways that matter here:

- Every new SSRC with a negotiated payload type is routed to the receiver and added, for good, to its router's SSRC
  table and its RTCP statistics. Each one adds a 24-byte report block to every receiver report; past about 60 the
  report no longer fits a packet, SRTCP refuses it (``ValueError: packet is too long``) and the receiver's RTCP task
  dies. ``RTCRtpReceiver.stop`` waits for that task to say it exited, so closing the connection then waits forever,
  and with it the WHIP DELETE, the call's end and the engine's stop.
- A report field that no longer fits its RTCP width (the interarrival jitter, from timestamps that swing by 2^32)
  makes ``struct.pack`` raise inside the same task, with the same result.

:func:`guard_receiver` closes both on one receiver. The connection follows one sending source: the SSRCs its offer
declares (``a=ssrc``), or else the first SSRC the router hands to a receiver; RTP from any other SSRC is dropped
before aiortc counts it (:attr:`ReceiverGuard.foreign`), so the tables stay one entry long. And a receiver report or
feedback packet that cannot be built or protected is skipped and counted (:attr:`ReceiverGuard.rtcp_unsent`) instead
of ending the task. Both wrap one aiortc attribute each on that connection's objects only, checked before use: when
an aiortc release lacks them, :func:`guard_receiver` returns ``None`` and the connection runs unguarded.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

from aiortc import RTCRtpReceiver
from aiortc.rtcdtlstransport import RtpRouter
from aiortc.rtp import AnyRtcpPacket, RtpPacket

__all__ = ["ReceiverGuard", "guard_receiver"]

logger = logging.getLogger(__name__)
_warned_unguarded = False


@dataclass
class ReceiverGuard:
    """One guarded receiver: the SSRCs it follows, RTP dropped from others, RTCP packets it could not send."""

    ssrcs: set[int] = field(default_factory=set)
    foreign: int = 0
    rtcp_unsent: int = 0


def guard_receiver(receiver: RTCRtpReceiver, ssrcs: Iterable[int] = ()) -> ReceiverGuard | None:
    """Pin ``receiver``'s connection to one sending source (``ssrcs``, or the first to arrive) and keep its RTCP
    task alive whatever the peer sends; ``None`` (and nothing changed) if this aiortc lacks the hooked attributes.

    Call it once the remote description is set (the transport and its router exist) and before media flows.
    """
    router = getattr(receiver.transport, "_rtp_router", None)
    send_rtcp = getattr(receiver, "_send_rtcp", None)
    if not isinstance(router, RtpRouter) or not callable(getattr(router, "route_rtp", None)) or send_rtcp is None:
        global _warned_unguarded
        if not _warned_unguarded:
            _warned_unguarded = True
            logger.warning("media: this aiortc's receiver cannot be guarded; a peer can stall its RTCP and close")
        return None
    guard = ReceiverGuard(ssrcs=set(ssrcs))
    setattr(router, "route_rtp", _pinned_route(router.route_rtp, guard))  # noqa: B010 - one instance, not the class
    setattr(receiver, "_send_rtcp", _tolerant_send(send_rtcp, guard))  # noqa: B010
    return guard


def _pinned_route(
    route: Callable[[RtpPacket], object | None], guard: ReceiverGuard
) -> Callable[[RtpPacket], object | None]:
    def pinned(packet: RtpPacket) -> object | None:
        if guard.ssrcs and packet.ssrc not in guard.ssrcs:
            guard.foreign += 1
            return None
        receiver = route(packet)
        if receiver is not None and not guard.ssrcs:
            guard.ssrcs.add(packet.ssrc)
        return receiver

    return pinned


def _tolerant_send(
    send: Callable[[AnyRtcpPacket], Awaitable[None]], guard: ReceiverGuard
) -> Callable[[AnyRtcpPacket], Awaitable[None]]:
    async def tolerant(packet: AnyRtcpPacket) -> None:
        try:
            await send(packet)
        except (struct.error, ValueError, OverflowError) as exc:
            guard.rtcp_unsent += 1
            if guard.rtcp_unsent == 1:  # once per connection: the peer controls how often this happens
                logger.warning("RTCP %s not sent (%s); the receiver goes on", type(packet).__name__, exc)

    return tolerant
