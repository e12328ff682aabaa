"""The event loop the bot's processes run on: uvloop (libuv; its sockets, timers and callbacks in C) where it is
installed, else asyncio's own.

Measured with 40 media streams in one bot process, uvloop took the bot from about 50 % to about 40 % of a core: each
RTP datagram is one socket wake-up, and uvloop's wake-up costs a fraction of the selector loop's Python one. The
service's loop is uvicorn's (``loop=``); each media worker runs the same kind as the service that started it.
"""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Callable
from typing import Literal

__all__ = ["EventLoop", "loop_factory", "resolve", "running_loop_name", "uvloop_available"]

EventLoop = Literal["auto", "uvloop", "asyncio"]


def uvloop_available() -> bool:
    """Whether uvloop can be imported here."""
    return importlib.util.find_spec("uvloop") is not None


def resolve(choice: EventLoop) -> Literal["uvloop", "asyncio"]:
    """``auto`` → uvloop if installed, else asyncio; ``uvloop`` when it is not installed is a clear error."""
    if choice == "asyncio":
        return "asyncio"
    if uvloop_available():
        return "uvloop"
    if choice == "uvloop":
        raise RuntimeError("MEDIABOT_EVENT_LOOP=uvloop, but uvloop is not installed (pip install uvloop)")
    return "asyncio"


def running_loop_name() -> Literal["uvloop", "asyncio"]:
    """Which kind of loop runs the calling coroutine."""
    return "uvloop" if type(asyncio.get_running_loop()).__module__.startswith("uvloop") else "asyncio"


def loop_factory(name: Literal["uvloop", "asyncio"]) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """A factory for :class:`asyncio.Runner` (``None``: asyncio's default loop)."""
    if name == "asyncio":
        return None
    import uvloop

    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory
