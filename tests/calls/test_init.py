"""The package's public names are pinned."""

from __future__ import annotations

import mediabot.calls


def test_public_names() -> None:
    assert mediabot.calls.__all__ == [
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
    for name in mediabot.calls.__all__:
        assert getattr(mediabot.calls, name) is not None
    assert issubclass(mediabot.calls.UnknownCallError, LookupError)
