"""The aioice adjustments of :mod:`mediabot.media.ice`, on two real aioice connections over loopback."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest
from aioice import ice

from mediabot.media.ice import (
    MAX_DATAGRAM,
    allow_loopback_candidates,
    datagrams_guarded,
    dropped_datagrams,
    guard_datagrams,
    loopback_candidates_allowed,
)


@pytest.fixture
async def pair() -> AsyncIterator[tuple[ice.Connection, ice.Connection]]:
    """Two connected aioice connections, with ``127.0.0.1`` host candidates (the guard installed)."""
    allow_loopback_candidates()
    guard_datagrams()
    controlling = ice.Connection(ice_controlling=True, use_ipv6=False)
    controlled = ice.Connection(ice_controlling=False, use_ipv6=False)
    try:
        await asyncio.gather(controlling.gather_candidates(), controlled.gather_candidates())
        for local, remote in ((controlling, controlled), (controlled, controlling)):
            local.remote_username = remote.local_username
            local.remote_password = remote.local_password
            for candidate in remote.local_candidates:
                if candidate.host == "127.0.0.1":
                    await local.add_remote_candidate(candidate)
            await local.add_remote_candidate(None)
        async with asyncio.timeout(10):
            await asyncio.gather(controlling.connect(), controlled.connect())
        yield controlling, controlled
    finally:
        await controlling.close()
        await controlled.close()


def test_the_adjustments_are_installed_once() -> None:
    allow_loopback_candidates()
    guard_datagrams()
    lookup, hand_over = ice.get_host_addresses, ice.Connection.data_received
    allow_loopback_candidates()
    guard_datagrams()
    assert loopback_candidates_allowed() and datagrams_guarded()
    assert ice.get_host_addresses is lookup and ice.Connection.data_received is hand_over


async def test_empty_and_oversized_datagrams_from_anyone_are_dropped(
    pair: tuple[ice.Connection, ice.Connection],
) -> None:
    sender, receiver = pair
    targets = [(c.host, c.port) for c in receiver.local_candidates]
    dropped = dropped_datagrams()
    largest = b"\x80" + bytes(MAX_DATAGRAM - 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as stranger:
        for datagram in (b"", b"\x80" + bytes(MAX_DATAGRAM), bytes(64 * 1024 - 100), largest, b"\x80last"):
            for target in targets:
                stranger.sendto(datagram, target)
    await sender.send(b"\x80legit")
    async with asyncio.timeout(5):
        # Each socket keeps the order it was sent in, so every stranger's datagram was handled once "last" arrived.
        received = [await receiver.recv() for _ in range(2 * len(targets) + 1)]
    assert sorted(received) == sorted([largest, b"\x80last"] * len(targets) + [b"\x80legit"])
    assert dropped_datagrams() - dropped == 3 * len(targets)
