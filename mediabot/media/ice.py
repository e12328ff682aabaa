"""ICE host candidates on loopback, as an explicit opt-in (``MEDIABOT_MEDIA_ICE_LOOPBACK``).

aioice (aiortc's ICE agent, 0.13) gathers host candidates from every interface except ``127.0.0.1`` and has no
option to include it. A host whose only interface is loopback (a container or network namespace for tests) then has
no candidate at all and WebRTC cannot connect. :func:`allow_loopback_candidates` wraps aioice's address lookup so
that it also returns ``127.0.0.1``; it is applied only when the setting asks for it, at start-up of the media engine
or the sandbox relay (never at import), is idempotent, and :func:`loopback_candidates_allowed` reports it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from aioice import ice

__all__ = ["allow_loopback_candidates", "loopback_candidates_allowed"]

logger = logging.getLogger(__name__)

_LOOPBACK = "127.0.0.1"
_MARK = "_mediabot_loopback"


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
