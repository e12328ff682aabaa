"""aioice adjustments, installed process-wide at start-up of the media engine (never at import), each idempotent.

**Loopback host candidates**, an explicit opt-in (``MEDIABOT_MEDIA_ICE_LOOPBACK``). aioice (aiortc's ICE agent, 0.13)
gathers host candidates from every interface except ``127.0.0.1`` and has no option to include it. A host whose only
interface is loopback (a container or network namespace for tests) then has no candidate at all and WebRTC cannot
connect. :func:`allow_loopback_candidates` wraps aioice's address lookup so that it also returns ``127.0.0.1``; it is
applied only when the setting asks for it, at start-up of the media engine or the sandbox relay, and
:func:`loopback_candidates_allowed` reports it.

**A datagram guard**, always. aioice hands every datagram that does not parse as STUN to the connection, whatever
address it came from, and aiortc 1.16's DTLS transport reads it in one loop per connection that ends at the first
exception it doesn't expect: an empty datagram raises ``IndexError`` (it reads ``data[0]`` to demultiplex DTLS from
SRTP), and one over 1500 bytes that starts in the SRTP range raises ``ValueError`` (pylibsrtp's "packet is too long",
where aiortc catches only ``pylibsrtp.Error``). Either ends the call's media, sent by anyone who can reach the port,
no keys needed. :func:`guard_datagrams` wraps aioice's hand-over so that empty datagrams and datagrams over
:data:`MAX_DATAGRAM` bytes are dropped before aiortc sees them (no legitimate datagram is bigger: aiortc reads and
writes DTLS 1500 bytes at a time, WebRTC stacks fragment DTLS to the path MTU, and pylibsrtp cannot take a bigger
SRTP packet); :func:`datagrams_guarded` reports it and :func:`dropped_datagrams` counts what it dropped. STUN is parsed
before the hand-over and is not affected.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from aioice import ice

__all__ = [
    "MAX_DATAGRAM",
    "allow_loopback_candidates",
    "datagrams_guarded",
    "dropped_datagrams",
    "guard_datagrams",
    "loopback_candidates_allowed",
]

logger = logging.getLogger(__name__)

MAX_DATAGRAM = 1500  # bytes: pylibsrtp's buffer, and more than any DTLS record or SRTP packet sent over UDP here

_LOOPBACK = "127.0.0.1"
_MARK = "_mediabot_loopback"
_GUARD_MARK = "_mediabot_datagram_guard"
_dropped = 0


def loopback_candidates_allowed() -> bool:
    """Whether ICE gathering in this process includes ``127.0.0.1``."""
    return bool(getattr(ice.get_host_addresses, _MARK, False))


def allow_loopback_candidates() -> None:
    """Make aioice gather a ``127.0.0.1`` host candidate too (process-wide; idempotent)."""
    if loopback_candidates_allowed():
        return
    original: Callable[[bool, bool], list[str]] = ice.get_host_addresses

    def with_loopback(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        addresses = original(use_ipv4, use_ipv6)
        if use_ipv4 and _LOOPBACK not in addresses:
            addresses.append(_LOOPBACK)
        return addresses

    setattr(with_loopback, _MARK, True)
    ice.get_host_addresses = with_loopback
    logger.info("ICE: host candidates on %s allowed (MEDIABOT_MEDIA_ICE_LOOPBACK)", _LOOPBACK)


def datagrams_guarded() -> bool:
    """Whether this process drops empty and oversized datagrams before aiortc reads them."""
    return bool(getattr(ice.Connection.data_received, _GUARD_MARK, False))


def dropped_datagrams() -> int:
    """How many datagrams the guard dropped in this process so far."""
    return _dropped


def guard_datagrams() -> None:
    """Drop empty datagrams and datagrams over :data:`MAX_DATAGRAM` bytes in aioice (process-wide; idempotent)."""
    if datagrams_guarded():
        return
    original: Callable[[ice.Connection, bytes, int], None] = ice.Connection.data_received

    def guarded(self: ice.Connection, data: bytes, component: int) -> None:
        global _dropped
        if 0 < len(data) <= MAX_DATAGRAM:
            original(self, data, component)
            return
        _dropped += 1
        if _dropped == 1:  # once per process: a flood of them must not flood the log
            logger.warning(
                "ICE: dropped a %d-byte datagram (empty or over %d bytes); further drops are only counted",
                len(data),
                MAX_DATAGRAM,
            )

    setattr(guarded, _GUARD_MARK, True)
    ice.Connection.data_received = guarded  # type: ignore[method-assign]
    logger.debug("ICE: datagrams that are empty or over %d bytes are dropped", MAX_DATAGRAM)
