"""Every log line the call plane writes about a call carries that call's id (the production filter, real sandbox)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Iterator
from pathlib import Path

import pytest

from mediabot.calls import CallManager, CallPhase, ManualClock
from mediabot.logs import LogContextFilter, log_context
from mediabot.media.session import ToneEvent
from mediabot.sandbox import SandboxServer

from .conftest import CALLBACK, ManagerFactory, RecordingBot, call_body, contract_body, notify, participant, roster_body


@pytest.fixture
def records(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """caplog at DEBUG for mediabot.calls, with the filter configure_logging installs on its handler."""
    caplog.set_level(logging.DEBUG, logger="mediabot.calls")
    context_filter = LogContextFilter()
    caplog.handler.addFilter(context_filter)
    yield caplog
    caplog.handler.removeFilter(context_filter)


async def about(caplog: pytest.LogCaptureFixture, call_id: str, step: Awaitable[object]) -> list[str]:
    """Run one step of handling; every mediabot.calls record it produced must carry ``call_id``; their messages."""
    caplog.clear()
    await step
    mine = [r for r in caplog.records if r.name == "mediabot.calls" or r.name.startswith("mediabot.calls.")]
    wrong = [(r.getMessage(), getattr(r, "call_id", None)) for r in mine if getattr(r, "call_id", None) != call_id]
    assert wrong == [], f"records without call id {call_id}"
    return [r.getMessage() for r in mine]


async def ring(sandbox: SandboxServer, manager: CallManager, caplog: pytest.LogCaptureFixture) -> tuple[str, list[str]]:
    """Ring the bot; the call id and the lines logged while it was answered."""
    resource = sandbox.incoming_call(callback_uri=CALLBACK)
    call_id = str(resource["id"])
    return call_id, await about(caplog, call_id, notify(manager, call_body(call_id, "created", **resource)))


async def test_lines_about_a_call_carry_its_id(
    sandbox: SandboxServer,
    make_manager: ManagerFactory,
    clock: ManualClock,
    bot: RecordingBot,
    graph_contract: Path,
    records: pytest.LogCaptureFixture,
) -> None:
    manager = await make_manager(keepalive_interval=900)
    bot.fail_in = {"established"}  # its traceback is logged from the call's hook lane (a task)

    # The answer is sent from a task the notification started.
    first_id, lines = await ring(sandbox, manager, records)
    assert any("incoming" in line for line in lines) and any("answered" in line for line in lines)
    second_id, lines = await ring(sandbox, manager, records)
    assert first_id != second_id and any("answered" in line for line in lines)

    lines = await about(
        records, first_id, notify(manager, contract_body(graph_contract, "call-answer-ex1-establishing", first_id))
    )
    assert any("establishing" in line for line in lines)
    lines = await about(
        records, first_id, notify(manager, contract_body(graph_contract, "call-answer-ex1-established", first_id))
    )
    assert any("Bot.on_established raised" in line for line in lines)
    lines = await about(records, second_id, notify(manager, roster_body(second_id, [participant("a", "Ann")])))
    assert any("roster" in line for line in lines)

    # The media plane's news arrives outside any notification: the hook lane's task binds the call by itself.
    bot.fail_in.add("tone")

    async def heard_tone() -> None:
        with log_context(participant_id="a"):  # the media plane speaks about one participant
            manager.on_tone(ToneEvent(second_id, "7", "a", "5", 1.25, 1.35))
        await manager.drain()

    lines = await about(records, second_id, heard_tone())
    assert any("Bot.on_tone raised" in line for line in lines)
    # The lane serves the whole call: it does not keep the participant of whoever started it.
    assert [getattr(r, "participant_id", None) for r in records.records] == [None] * len(records.records)

    # The keepAlive timer of the first call: a failure, then Graph no longer knows the call.
    sandbox.inject_fault("POST", f"/v1.0/communications/calls/{first_id}/keepAlive", 500)

    async def keepalive() -> None:
        await clock.advance(900)
        await manager.drain()

    lines = await about(records, first_id, keepalive())
    assert any("keepAlive failed" in line for line in lines)
    sandbox.end_call(first_id)
    lines = await about(records, first_id, keepalive())
    assert any("terminated" in line for line in lines)
    first = manager.get(first_id)
    assert first is not None and first.state is CallPhase.TERMINATED

    lines = await about(records, second_id, manager.hang_up(second_id))
    assert any("terminating" in line for line in lines)
    lines = await about(
        records, second_id, notify(manager, contract_body(graph_contract, "call-delete-terminated", second_id))
    )
    assert any("terminated" in line for line in lines)

    # Outside any call, nothing is attached.
    records.clear()
    logging.getLogger("mediabot.calls.manager").info("between calls")
    assert [getattr(r, "call_id", None) for r in records.records] == [None]
