"""Errors of the call plane, branches of the one tree rooted at :class:`~mediabot.MediaBotError`.

::

    MediaBotError
    └── CallError                   a call-plane request that cannot be carried out
        ├── UnknownCallError        no call with that id is managed here
        ├── CallEndedError          the call ended before the operation completed
        └── OperationTimeoutError   no completion notification within the operation timeout
"""

from __future__ import annotations

from mediabot._errors import MediaBotError

__all__ = ["CallEndedError", "CallError", "OperationTimeoutError", "UnknownCallError"]


class CallError(MediaBotError):
    """A call-plane request that cannot be carried out."""


class UnknownCallError(CallError, LookupError):
    """No call with that id is managed by this ``CallManager``."""


class CallEndedError(CallError):
    """The call ended while an operation on it was still pending."""


class OperationTimeoutError(CallError, TimeoutError):
    """An operation's completion notification did not arrive within the operation timeout."""
