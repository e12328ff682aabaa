"""Time for the call plane: the ``Clock`` protocol, the real ``SystemClock`` and a ``ManualClock`` for tests.

Every timer of :mod:`mediabot.calls` (answer deadline, keepAlive, reconciliation, operation timeouts) reads and
sleeps through a ``Clock``, so tests move time forward with :meth:`ManualClock.advance` instead of sleeping.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "ManualClock", "SystemClock"]

# How many event-loop turns ManualClock.advance gives woken tasks to reach their next await.
_SETTLE_TURNS = 8


@runtime_checkable
class Clock(Protocol):
    """Monotonic time and sleeping; the seam that lets tests control every timer."""

    def now(self) -> float:
        """Monotonic seconds (only differences are meaningful)."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Return after ``seconds`` of this clock's time."""
        ...


class SystemClock:
    """The real clock: ``time.monotonic`` and ``asyncio.sleep``."""

    def now(self) -> float:
        """Monotonic seconds of the host."""
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        """Sleep for real."""
        await asyncio.sleep(max(0.0, seconds))


class ManualClock:
    """A clock that only moves when told: ``await clock.advance(s)`` wakes every sleeper due by then, in order.

    Sleepers are woken one deadline at a time (earliest first, ties in the order they started sleeping); after each
    deadline the woken tasks get a few event-loop turns to run to their next ``await``, so a loop that sleeps again
    is woken again if its next deadline still falls inside the advanced span. Work that waits on real I/O (an HTTP
    request) is not waited for: await it separately (``CallManager.drain()``).
    """

    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def now(self) -> float:
        """The current manual time."""
        return self._now

    @property
    def sleepers(self) -> int:
        """How many tasks are sleeping on this clock right now."""
        return sum(1 for _, _, future in self._sleepers if not future.done())

    async def sleep(self, seconds: float) -> None:
        """Sleep until :meth:`advance` moves past ``now() + seconds`` (a non-positive span just yields)."""
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._now + seconds, next(self._order), future))
        await future

    async def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``, waking sleepers deadline by deadline."""
        if seconds < 0:
            raise ValueError("a clock does not go backwards")
        target = self._now + seconds
        while self._sleepers and self._sleepers[0][0] <= target:
            self._now = max(self._now, self._sleepers[0][0])
            while self._sleepers and self._sleepers[0][0] <= self._now:
                _, _, future = heapq.heappop(self._sleepers)
                if not future.done():
                    future.set_result(None)
            await _settle()
        self._now = target
        await _settle()


async def _settle() -> None:
    for _ in range(_SETTLE_TURNS):
        await asyncio.sleep(0)
