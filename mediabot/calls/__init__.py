"""The call plane: ``CallManager`` (one state machine per call), policies, keepAlive, compliance gate, ``Bot`` hooks.

It speaks Graph through :mod:`mediabot.graph` and never touches media: the media plane plugs in as a
:class:`MediaProvider` and reads the compliance gate of a :class:`ManagedCall`.
"""

from mediabot.calls.bot import Bot
from mediabot.calls.call import CallOperation, CallPhase, ManagedCall, ToneRecord
from mediabot.calls.clock import Clock, ManualClock, SystemClock
from mediabot.calls.config import CallConfig
from mediabot.calls.errors import CallEndedError, CallError, OperationTimeoutError, UnknownCallError
from mediabot.calls.manager import CallManager, OperationStarter
from mediabot.calls.media import MediaProvider, ServiceHostedMedia
from mediabot.calls.policy import AnswerAction, AnswerDecision, AnswerPolicy

__all__ = [
    "AnswerAction",
    "AnswerDecision",
    "AnswerPolicy",
    "Bot",
    "CallConfig",
    "CallEndedError",
    "CallError",
    "CallManager",
    "CallOperation",
    "CallPhase",
    "Clock",
    "ManagedCall",
    "ManualClock",
    "MediaProvider",
    "OperationStarter",
    "OperationTimeoutError",
    "ServiceHostedMedia",
    "SystemClock",
    "ToneRecord",
    "UnknownCallError",
]
