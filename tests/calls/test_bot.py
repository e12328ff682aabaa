"""The Bot base class: every hook is an awaitable no-op, so subclasses override only what they need."""

from __future__ import annotations

from datetime import UTC, datetime

from mediabot.calls import Bot, CallPhase, ManagedCall, ToneRecord
from mediabot.graph.models import CommsOperation


async def test_default_hooks_do_nothing() -> None:
    bot = Bot()
    call = ManagedCall("c1", direction=None, state=CallPhase.INCOMING, created=datetime.now(UTC), created_at=0.0)
    assert await bot.on_incoming_call(call) is None
    await bot.on_established(call)
    await bot.on_participants_changed(call, [], [])
    await bot.on_tone(call, ToneRecord(tone="tone1", sequence_id=1, received=datetime.now(UTC), call_time=None))
    await bot.on_operation_completed(call, CommsOperation(status="completed"))
    await bot.on_recording_status(call, False, "refused")
    await bot.on_terminated(call)
    assert call.state is CallPhase.INCOMING  # hooks never change the call
