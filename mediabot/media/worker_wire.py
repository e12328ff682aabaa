"""The wire between the service and a media worker: length-prefixed pickles over one stream socket (a socketpair).

Both ends are mediabot's own processes (the service spawned the worker and handed it its end of the pair), so
pickle is safe here; nothing else can reach the socket. Messages are tuples whose first item names the kind:

service → worker
    ``("call", request_id, method, args)``  a request; answered by a ``reply`` or an ``error``
    ``("tell", method, args)``              a request nobody waits for (roster, gate, call events, bind)

worker → service
    ``("ready", pid)``                                  the worker's engine started
    ``("reply", request_id, value)`` / ``("error", request_id, RemoteError)``
    ``("state", {session_id: (call_id, live, totals)}, (frame_delay_counts, frame_delay_total))``
    ``("speech", session_id, call_id, SpeechEvent)``    a closed segment, its audio included
    ``("tone", ToneEvent)`` · ``("media_error", call_id, message)``
    ``("closed", session_id, live, totals)``            the session ended and its files are finished

Messages go in order on one socket, so a request sent after another is seen after it by the worker, and an event the
worker sent before a reply is handled by the service before that reply's caller resumes.
"""

from __future__ import annotations

import asyncio
import importlib
import pickle
import struct
from dataclasses import dataclass
from typing import Any

from mediabot._errors import MediaBotError, MediaError

__all__ = ["RemoteError", "WorkerLost", "read_message", "write_message"]

_HEADER = struct.Struct("!I")


class WorkerLost(MediaError):
    """The media worker that owned the session stopped (it died, or the service is stopping)."""


async def read_message(reader: asyncio.StreamReader) -> Any:
    """The next message; ``asyncio.IncompleteReadError`` at the end of the stream."""
    (size,) = _HEADER.unpack(await reader.readexactly(_HEADER.size))
    return pickle.loads(await reader.readexactly(size))  # noqa: S301 - written by our own process (see above)


def write_message(writer: asyncio.StreamWriter, message: Any) -> None:
    """Queue one message (the transport buffers; events and replies are small, segments at most a few MB)."""
    payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    writer.writelines((_HEADER.pack(len(payload)), payload))


@dataclass(frozen=True, slots=True)
class RemoteError:
    """An exception raised in a worker, as it crosses the wire: its class (by module and name) and message."""

    module: str
    name: str
    message: str

    @classmethod
    def of(cls, exc: BaseException) -> RemoteError:
        """Describe ``exc``."""
        kind = type(exc)
        return cls(kind.__module__, kind.__qualname__, str(exc))

    def exception(self) -> Exception:
        """The same mediabot error class with the same message (a ``WhipError`` keeps its HTTP status); any other
        exception becomes a :class:`MediaError` naming it."""
        kind: Any = None
        if self.module == "mediabot" or self.module.startswith("mediabot."):
            try:
                kind = getattr(importlib.import_module(self.module), self.name, None)
            except ImportError:
                kind = None
        if isinstance(kind, type) and issubclass(kind, MediaBotError):
            try:
                return kind(self.message)
            except TypeError:  # a constructor that wants more than the message
                pass
        return MediaError(f"{self.name} in the media worker: {self.message}")
