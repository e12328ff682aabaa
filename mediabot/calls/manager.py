"""``CallManager``: the signaling brain. One state machine per call, fed by Graph's notifications.

It owns the calls this instance handles: answering or rejecting incoming calls (policy + :class:`Bot` override,
inside Graph's answer deadline), placing calls and joining meetings, the roster, DTMF tones, operation tracking by
``clientContext``, keepAlive, reconciliation of silent calls by GET, hanging up calls whose media vanished (the media
plane's ``on_media_lost``), the compliance-recording gate, and calling the user's
:class:`~mediabot.calls.bot.Bot` hooks. It never touches media; it asks a :class:`~mediabot.calls.media.MediaProvider`
for the ``mediaConfig``.

Concurrency model: :meth:`CallManager.handle_notifications` applies every event to the call's state synchronously,
in order, and returns; anything slow (Graph requests, Bot hooks) runs in tasks. Hooks of one call run in a
per-call lane, one at a time in notification order; different calls never wait for each other. Timers (answer
deadline, keepAlive, reconciliation, operation timeouts) all sleep on the injected :class:`~mediabot.calls.Clock`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from mediabot._errors import GraphError, GraphNotFoundError
from mediabot.calls.bot import Bot
from mediabot.calls.call import CallOperation, CallPhase, ManagedCall, ToneRecord, identities, phase_for_graph_state
from mediabot.calls.clock import Clock, SystemClock
from mediabot.calls.config import CallConfig
from mediabot.calls.errors import CallEndedError, CallError, OperationTimeoutError, UnknownCallError
from mediabot.calls.media import MediaProvider, RosterEntry, ServiceHostedMedia
from mediabot.calls.policy import AnswerAction, AnswerDecision
from mediabot.graph.client import GraphClient, media_prompt
from mediabot.graph.models import (
    Call,
    ChangeType,
    CommsOperation,
    OperationStatus,
    Participant,
    PlayPromptOperation,
    RecordingStatus,
    ResultInfo,
    ToneInfo,
)
from mediabot.graph.notifications import (
    CallTerminated,
    CallUpdated,
    CommsEvent,
    ContentSharingUpdated,
    OperationUpdated,
    RosterUpdated,
    ToneReceived,
)
from mediabot.logs import context_with_ids, log_context
from mediabot.media.session import SpeechEvent, ToneEvent
from mediabot.transcribe.base import TranscriptEntry

__all__ = ["CallManager", "OperationStarter"]

logger = logging.getLogger(__name__)

OperationStarter = Callable[[str], Awaitable[CommsOperation | None]]
"""Starts one Graph operation given its ``clientContext``; returns the operation Graph answered with (or None)."""

_DONE_STATUSES = frozenset({OperationStatus.COMPLETED, OperationStatus.FAILED})


def _wall() -> datetime:
    return datetime.now(UTC)


@dataclass(eq=False)
class _PendingOperation:
    call_id: str
    client_context: str
    future: asyncio.Future[CommsOperation]
    operation_id: str | None = None
    timer: asyncio.Task[None] | None = None


@dataclass(eq=False)
class _HookLane:
    """The queue of Bot hooks of one call, run one at a time."""

    call_id: str
    queue: deque[tuple[str, Callable[[], Awaitable[object]]]] = field(default_factory=deque)
    task: asyncio.Task[None] | None = None


class CallManager:
    """One state machine per call, driven by Graph notifications; see the module docstring for the model."""

    def __init__(
        self,
        graph: GraphClient,
        bot: Bot,
        config: CallConfig,
        *,
        clock: Clock | None = None,
        media: MediaProvider | None = None,
    ) -> None:
        self._graph = graph
        self._bot = bot
        self._config = config
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._media: MediaProvider = media if media is not None else ServiceHostedMedia()
        set_listener = getattr(self._media, "set_listener", None)
        if callable(set_listener):
            set_listener(self)
        self._calls: dict[str, ManagedCall] = {}
        self._ended: deque[str] = deque()
        self._media_calls: set[str] = set()
        self._lanes: dict[str, _HookLane] = {}
        self._timers: dict[str, set[asyncio.Task[None]]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._by_context: dict[str, _PendingOperation] = {}
        self._by_operation_id: dict[str, _PendingOperation] = {}
        self._running = False

    # -- lifecycle -------------------------------------------------------------------------------------------------

    @property
    def config(self) -> CallConfig:
        """The configuration this manager runs with."""
        return self._config

    @property
    def clock(self) -> Clock:
        """The clock every timer of this manager uses."""
        return self._clock

    @property
    def running(self) -> bool:
        """Whether :meth:`start` was called and :meth:`stop` not yet."""
        return self._running

    async def start(self) -> None:
        """Start accepting notifications and requests."""
        self._running = True
        logger.info("call manager started (callback %s)", self._config.callback_url)

    async def stop(self, *, hang_up: bool = False) -> None:
        """Cancel every timer and background task; with ``hang_up``, first hang up the calls still live."""
        if hang_up:
            live = [call.id for call in self._calls.values() if not call.ended_or_ending]
            results = await asyncio.gather(*(self.hang_up(call_id) for call_id in live), return_exceptions=True)
            for call_id, result in zip(live, results, strict=True):
                if isinstance(result, BaseException):
                    logger.warning(
                        "call %s: hang-up at shutdown failed: %s", call_id, result, extra={"call_id": call_id}
                    )
        self._running = False
        tasks = [task for timers in self._timers.values() for task in timers] + list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._timers.clear()
        self._lanes.clear()
        for pending in list(self._by_context.values()):
            self._fail(pending, CallError("the call manager stopped"))
        logger.info("call manager stopped")

    async def drain(self) -> None:
        """Wait until every background action and Bot hook started so far (and any they start) has finished."""
        while True:
            for _ in range(3):
                await asyncio.sleep(0)  # let just-woken tasks reach their next await and spawn their work
            busy = [task for task in self._tasks if not task.done() and task is not asyncio.current_task()]
            if not busy:
                return
            await asyncio.wait(busy)

    # -- queries ---------------------------------------------------------------------------------------------------

    def calls(self) -> list[ManagedCall]:
        """Every call known, live and recently ended, oldest first."""
        return list(self._calls.values())

    def get(self, call_id: str) -> ManagedCall | None:
        """The call with that id, or None."""
        return self._calls.get(call_id)

    def _require(self, call_id: str) -> ManagedCall:
        call = self._calls.get(call_id)
        if call is None:
            raise UnknownCallError(f"no call {call_id!r} is managed here")
        return call

    # -- notifications ---------------------------------------------------------------------------------------------

    async def handle_notifications(self, events: Sequence[CommsEvent]) -> None:
        """Apply parsed, authenticated notification events in order; slow work is left to tasks, so this is quick."""
        if not self._running:
            raise RuntimeError("the call manager is not started")
        now = self._clock.now()
        for event in events:
            call = self._calls.get(event.call_id)
            if call is not None:
                call.last_heard = now
            # Everything logged while applying it (and every task it starts) is about this call.
            with log_context(call_id=event.call_id or None):
                try:
                    self._apply(event)
                except Exception:
                    logger.exception("call %s: could not apply a %s notification", event.call_id, type(event).__name__)

    def _apply(self, event: CommsEvent) -> None:
        if isinstance(event, CallTerminated):
            self._on_terminated(event)
        elif isinstance(event, CallUpdated):
            self._on_call_updated(event)
        elif isinstance(event, RosterUpdated):
            self._on_roster(event)
        elif isinstance(event, OperationUpdated):
            self._on_operation(event)
        elif isinstance(event, ContentSharingUpdated):
            logger.debug("call %s: content sharing %s", event.call_id, event.change_type)
        else:
            logger.debug("ignoring a notification about %s", event.resource_url)

    def _on_call_updated(self, event: CallUpdated) -> None:
        phase = phase_for_graph_state(event.state)
        call = self._calls.get(event.call_id)
        if call is None:
            if phase is None or not event.call_id:
                logger.debug("call %s: update (state %s) for an unknown call ignored", event.call_id, event.state)
                return
            call = self._new_call(event.call_id, event.call.direction, CallPhase.INCOMING)
            self._merge(call, event.call)
            if phase is CallPhase.INCOMING:
                logger.info("call %s: incoming from %s", call.id, call.caller_ids())
                self._spawn(self._take_incoming(call), f"answer {call.id}", call.id)
            else:
                logger.info("call %s: adopted in state %s", call.id, event.state)
        elif call.state is CallPhase.TERMINATED:
            logger.debug("call %s: update (state %s) after termination ignored", call.id, event.state)
            return
        else:
            self._merge(call, event.call)
        if phase is not None:
            if call.state is CallPhase.TRANSFERRING and phase is CallPhase.ESTABLISHED and event.call.result_info:
                result = event.call.result_info
                call.note = f"transfer failed: {result.code}/{result.subcode} {result.message or ''}".rstrip()
            self._move(call, phase, event.call)
        if isinstance(event, ToneReceived):
            self._record_tone(call, event.tone)

    def _on_terminated(self, event: CallTerminated) -> None:
        call = self._calls.get(event.call_id)
        if call is None:
            logger.debug("call %s: terminated notification for an unknown call ignored", event.call_id)
            return
        self._merge(call, event.call)
        self._finish(call, event.result_info, None)

    # -- state machine ---------------------------------------------------------------------------------------------

    def _new_call(self, call_id: str, direction: str | None, phase: CallPhase) -> ManagedCall:
        call = ManagedCall(
            call_id,
            direction=direction,
            state=phase,
            created=_wall(),
            created_at=self._clock.now(),
            compliance_recording=self._config.compliance_recording,
        )
        self._calls[call_id] = call
        self._timer(call, self._watchdog(call))
        return call

    def _merge(self, call: ManagedCall, resource: Call) -> None:
        """Copy what a call resource (notification or GET) tells about the parties into the managed call."""
        if resource.state:
            call.graph_state = resource.state
        if call.direction is None and resource.direction:
            call.direction = resource.direction
        if resource.source is not None:
            call.source = resource.source
        if resource.targets:
            call.targets = list(resource.targets)
        if resource.subject:
            call.subject = resource.subject
        if resource.my_participant_id:
            call.my_participant_id = resource.my_participant_id
        if resource.call_options is not None and resource.call_options.is_delta_roster_enabled:
            call.delta_roster = True

    def _move(self, call: ManagedCall, phase: CallPhase, resource: Call | None = None) -> bool:
        """Move the call to ``phase`` if that is progress; run the phase's side effects. False for a no-op."""
        old = call.state
        if not old.can_move_to(phase):
            if old is not phase:
                logger.debug("call %s: late %s ignored (already %s)", call.id, phase, old)
            return False
        if phase is CallPhase.TERMINATED:
            self._finish(call, resource.result_info if resource else None, None)
            return True
        call.state = phase
        logger.info("call %s: %s -> %s", call.id, old, phase)
        self._media.call_event(call.id, "state", state=str(phase))
        if phase is CallPhase.ESTABLISHED and call.established is None:
            self._on_established(call)
        return True

    def _on_established(self, call: ManagedCall) -> None:
        call.established = _wall()
        call.established_at = self._clock.now()
        self._timer(call, self._keepalive_loop(call))
        if call.compliance_recording:
            self._spawn(self._announce_recording(call), f"recording {call.id}", call.id)
        else:
            self._decide_gate(call, True)
        self._hook(call, "on_established", lambda: self._bot.on_established(call))

    def _finish(self, call: ManagedCall, result_info: ResultInfo | None, note: str | None) -> None:
        """End the call locally: timers stop, pending operations fail, media is released, the Bot is told."""
        if call.state is CallPhase.TERMINATED:
            return
        old = call.state
        call.state = CallPhase.TERMINATED
        call.ended = _wall()
        if result_info is not None:
            call.result_info = result_info
        if note is not None:
            call.note = note
        logger.info(
            "call %s: %s -> terminated (%s)",
            call.id,
            old,
            note or (f"{result_info.code}/{result_info.subcode}" if result_info is not None else "no result"),
        )
        current = asyncio.current_task()
        for task in self._timers.pop(call.id, set()):
            if task is not current:
                task.cancel()
        self._decide_gate(call, False)
        for pending in [p for p in self._by_context.values() if p.call_id == call.id]:
            self._fail(pending, CallEndedError(f"call {call.id} ended before the operation completed"))
        result = call.result_info
        self._media.call_event(
            call.id,
            "state",
            state=str(CallPhase.TERMINATED),
            code=result.code if result is not None else None,
            subcode=result.subcode if result is not None else None,
            note=call.note,
        )
        if call.id in self._media_calls:
            self._media_calls.discard(call.id)
            self._spawn(self._release_media(call.id), f"release {call.id}", call.id)
        self._hook(call, "on_terminated", lambda: self._bot.on_terminated(call))
        self._ended.append(call.id)
        while len(self._ended) > self._config.ended_calls_kept:
            self._calls.pop(self._ended.popleft(), None)

    # -- incoming calls --------------------------------------------------------------------------------------------

    async def _take_incoming(self, call: ManagedCall) -> None:
        """Decide on an incoming call and send the answer, reject or redirect before the deadline."""
        deadline = call.created_at + self._config.answer_deadline
        decision = await self._incoming_decision(call, deadline)
        if call.state is not CallPhase.INCOMING:
            logger.info("call %s: no longer incoming (%s); not acting on it", call.id, call.state)
            return
        if self._deadline_passed(call, deadline):
            return
        try:
            if decision.action is AnswerAction.ANSWER:
                media_config = await self._media.media_config(call.id, gated=call.compliance_recording)
                self._media_calls.add(call.id)
                if self._deadline_passed(call, deadline) or not self._move(call, CallPhase.ANSWERED):
                    return
                call.answered = _wall()
                call_options = (
                    {"@odata.type": "#microsoft.graph.incomingCallOptions", "isDeltaRosterEnabled": True}
                    if self._config.delta_roster
                    else None
                )
                call.delta_roster = call.delta_roster or self._config.delta_roster
                await self._graph.answer(
                    call.id,
                    callback_uri=self._config.callback_url,
                    media_config=media_config,
                    call_options=call_options,
                )
                logger.info("call %s: answered", call.id)
            elif decision.action is AnswerAction.REJECT:
                self._move(call, CallPhase.REJECTED)
                await self._graph.reject(call.id, reason=decision.reason)
                logger.info("call %s: rejected (%s)", call.id, decision.reason)
            else:
                self._move(call, CallPhase.REDIRECTING)
                await self._graph.redirect(
                    call.id,
                    list(decision.targets),
                    ring_timeout_s=decision.ring_timeout_s,
                    callback_uri=self._config.callback_url,
                )
                logger.info("call %s: redirected to %d target(s)", call.id, len(decision.targets))
        except GraphNotFoundError:
            self._finish(call, None, f"{decision.action}: the call was already gone (404)")
        except GraphError as exc:
            call.note = f"{decision.action} failed: {exc}"
            logger.warning("call %s: %s failed: %s", call.id, decision.action, exc)

    def _deadline_passed(self, call: ManagedCall, deadline: float) -> bool:
        if self._clock.now() < deadline:
            return False
        call.note = "not answered: the answer deadline passed"
        logger.warning("call %s: answer deadline passed; leaving the call unanswered", call.id)
        return True

    async def _incoming_decision(self, call: ManagedCall, deadline: float) -> AnswerDecision:
        """The Bot's decision if it gives one before the deadline, else the policy's."""
        hook = asyncio.ensure_future(self._bot.on_incoming_call(call))
        timer = asyncio.ensure_future(self._clock.sleep(deadline - self._clock.now()))
        try:
            await asyncio.wait({hook, timer}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            timer.cancel()
            decided = hook.done()
            if not decided:
                hook.cancel()
        decision: AnswerDecision | None = None
        if not decided:
            logger.warning("call %s: on_incoming_call did not return before the answer deadline", call.id)
        elif hook.cancelled():
            logger.warning("call %s: on_incoming_call was cancelled", call.id)
        elif (error := hook.exception()) is not None:
            logger.error("call %s: on_incoming_call raised; using the answer policy", call.id, exc_info=error)
        else:
            decision = hook.result()
        return decision if decision is not None else self._config.answer_policy.decide(call)

    # -- calls we place --------------------------------------------------------------------------------------------

    async def place_call(
        self, user_id: str, *, display_name: str | None = None, tenant_id: str | None = None
    ) -> ManagedCall:
        """Call a Teams user (peer to peer); the call starts ``establishing``."""
        media_config = await self._media.media_config(None, gated=self._config.compliance_recording)
        async with self._creating(media_config):
            resource = await self._graph.call_user(
                user_id,
                callback_uri=self._config.callback_url,
                media_config=media_config,
                display_name=display_name,
                tenant_id=tenant_id,
            )
        return self._register_outgoing(resource, media_config)

    async def place_group_call(
        self,
        targets: Sequence[Mapping[str, Any]],
        *,
        subject: str | None = None,
        display_name: str | None = None,
    ) -> ManagedCall:
        """Call several targets (``user_target``/``phone_target``) at once."""
        media_config = await self._media.media_config(None, gated=self._config.compliance_recording)
        async with self._creating(media_config):
            resource = await self._graph.call_group(
                targets,
                callback_uri=self._config.callback_url,
                media_config=media_config,
                subject=subject,
                display_name=display_name,
            )
        return self._register_outgoing(resource, media_config)

    async def join_meeting(self, join_web_url: str, *, display_name: str | None = None) -> ManagedCall:
        """Join a Teams meeting by its join link."""
        media_config = await self._media.media_config(None, gated=self._config.compliance_recording)
        async with self._creating(media_config):
            resource = await self._graph.join_meeting_by_url(
                join_web_url,
                callback_uri=self._config.callback_url,
                media_config=media_config,
                display_name=display_name,
            )
        return self._register_outgoing(resource, media_config)

    @contextlib.asynccontextmanager
    async def _creating(self, media_config: dict[str, Any]) -> AsyncIterator[None]:
        """Creating a call: if the request fails, the media prepared for it is discarded."""
        try:
            yield
        except BaseException:
            await self._media.discard(media_config)
            raise

    def _register_outgoing(self, resource: Call, media_config: dict[str, Any]) -> ManagedCall:
        if not resource.id:
            raise CallError("Graph created a call but returned no id")
        with log_context(call_id=resource.id):
            self._media.bind(media_config, resource.id)
            # Its first notifications may have beaten the POST's response: then the call exists already.
            call = self._calls.get(resource.id) or self._new_call(resource.id, "outgoing", CallPhase.ESTABLISHING)
            call.direction = "outgoing"
            self._merge(call, resource)
            self._media_calls.add(call.id)
            if (phase := phase_for_graph_state(resource.state)) is not None:
                self._move(call, phase, resource)
            logger.info("call %s: placed (%s)", call.id, call.state)
        return call

    # -- actions on a call -----------------------------------------------------------------------------------------

    async def hang_up(self, call_id: str) -> None:
        """Leave the call; in compliance mode first tell Teams the recording stopped (or failed)."""
        with log_context(call_id=call_id):
            call = self._require(call_id)
            if call.state is CallPhase.TERMINATED:
                return
            if call.compliance_recording and call.recording_status == RecordingStatus.RECORDING:
                status = RecordingStatus.FAILED if call.media_failed else RecordingStatus.NOT_RECORDING
                try:
                    await self._graph.update_recording_status(call.id, status, client_context=str(uuid.uuid4()))
                    call.recording_status = status
                except GraphNotFoundError:
                    self._finish(call, None, "hang-up: the call was already gone (404)")
                    return
                except GraphError as exc:
                    logger.warning("call %s: updateRecordingStatus(%s) at hang-up failed: %s", call.id, status, exc)
            self._decide_gate(call, False)
            self._move(call, CallPhase.TERMINATING)
            try:
                await self._graph.hang_up(call.id)
            except GraphNotFoundError:
                self._finish(call, None, "hang-up: the call was already gone (404)")

    async def transfer(
        self, call_id: str, transfer_target: Mapping[str, Any], *, transferee: Mapping[str, Any] | None = None
    ) -> None:
        """Transfer an established call; a failed request puts it back to ``established``."""
        call = self._require(call_id)
        if call.state is not CallPhase.ESTABLISHED:
            raise CallError(f"call {call_id} is {call.state}; only an established call can be transferred")
        with log_context(call_id=call_id):
            self._move(call, CallPhase.TRANSFERRING)
            try:
                await self._graph.transfer(call.id, transfer_target, transferee=transferee)
            except GraphError:
                self._move(call, CallPhase.ESTABLISHED)
                raise

    def report_recording_failed(self, call_id: str) -> None:
        """The media plane failed to record: the end of the call is announced as ``failed``, not ``notRecording``."""
        call = self._require(call_id)
        call.media_failed = True
        logger.warning("call %s: media reported a recording failure", call_id, extra={"call_id": call_id})

    async def play_prompt(self, call_id: str, uri: str) -> asyncio.Future[CommsOperation]:
        """Play the audio at ``uri``; the future resolves when playing completed or failed.

        Service-hosted media: Graph's playPrompt. App-hosted: our media plane plays it on the call's ``main``
        session, and its completion is reported as a ``playPromptOperation`` like Graph's (to the future and to
        ``Bot.on_operation_completed``).
        """
        if self._media.hosts(call_id):
            return await self.run_operation(
                call_id, lambda context: self._play_locally(call_id, uri, context), kind="playPrompt"
            )
        return await self.run_operation(
            call_id,
            lambda context: self._graph.play_prompt(call_id, [media_prompt(uri)], client_context=context),
            kind="playPrompt",
        )

    async def subscribe_to_tones(self, call_id: str) -> asyncio.Future[CommsOperation]:
        """Ask Graph for the call's DTMF tones (they reach ``Bot.on_tone``); the future resolves on completion."""
        return await self.run_operation(
            call_id,
            lambda context: self._graph.subscribe_to_tone(call_id, client_context=context),
            kind="subscribeToTone",
        )

    async def _play_locally(self, call_id: str, uri: str, context: str) -> CommsOperation:
        """Start an app-hosted prompt; its completion arrives like a Graph operation notification."""
        operation_id = str(uuid.uuid4())

        async def play() -> None:
            try:
                await self._media.play_prompt(call_id, uri)
                status, result = OperationStatus.COMPLETED, ResultInfo(code=200, subcode=0, message="prompt played")
            except Exception as exc:
                logger.warning("call %s: prompt %s failed: %s", call_id, uri, exc)
                status, result = OperationStatus.FAILED, ResultInfo(code=500, subcode=0, message=str(exc))
            done = PlayPromptOperation(
                id=operation_id,
                status=status,
                client_context=context,
                result_info=result,
                completion_reason="completedSuccessfully"
                if status == OperationStatus.COMPLETED
                else "mediaOperationError",
            )
            self._complete(self._calls.get(call_id), done, operation_id)

        self._spawn(play(), f"prompt {call_id}", call_id)
        return PlayPromptOperation(id=operation_id, status=OperationStatus.RUNNING, client_context=context)

    # -- operations ------------------------------------------------------------------------------------------------

    async def run_operation(
        self,
        call_id: str,
        start: OperationStarter,
        *,
        kind: str | None = None,
        completion_timeout: float | None = None,
    ) -> asyncio.Future[CommsOperation]:
        """Start an operation with a fresh ``clientContext``; a future of its final state (completed or failed).

        ``start(client_context)`` sends the request. The future resolves when the completion notification arrives
        (matched by ``clientContext``, else by operation id) or at once if Graph answered with a finished operation;
        it fails with :class:`OperationTimeoutError` after ``completion_timeout`` (default
        ``config.operation_timeout``) and with :class:`CallEndedError` if the call ends first. Errors of the request
        itself are raised here.
        """
        call = self._require(call_id)
        if call.state is CallPhase.TERMINATED:
            raise CallEndedError(f"call {call_id} has ended")
        context = str(uuid.uuid4())
        future: asyncio.Future[CommsOperation] = asyncio.get_running_loop().create_future()
        # Fire-and-forget callers may never look at the outcome: mark it seen so asyncio does not log it.
        future.add_done_callback(_consume)
        pending = _PendingOperation(call_id=call_id, client_context=context, future=future)
        record = CallOperation(client_context=context, kind=kind, status=OperationStatus.NOT_STARTED, started=_wall())
        call.operations[context] = record
        self._by_context[context] = pending
        try:
            with log_context(call_id=call_id):  # the request's own lines (Graph client, local prompt) too
                operation = await start(context)
        except BaseException:
            self._forget(pending)
            record.status = OperationStatus.FAILED
            record.finished = _wall()
            raise
        if operation is not None:
            if operation.id:
                record.id = pending.operation_id = operation.id
                if not future.done():
                    self._by_operation_id[operation.id] = pending
            if not record.done:
                record.status = operation.status or OperationStatus.RUNNING
            if operation.status in _DONE_STATUSES:
                self._complete(call, operation, operation.id)
        if not future.done():
            seconds = self._config.operation_timeout if completion_timeout is None else completion_timeout
            pending.timer = self._timer(call, self._expire(pending, self._clock.now() + seconds))
        return future

    def _on_operation(self, event: OperationUpdated) -> None:
        call = self._calls.get(event.call_id)
        operation = event.operation
        if operation.status in _DONE_STATUSES:
            self._complete(call, operation, event.operation_id)
        elif call is not None:
            record = self._operation_record(call, operation.client_context, event.operation_id)
            if not record.done:
                record.status = operation.status
                record.last = operation

    def _operation_record(self, call: ManagedCall, client_context: str | None, operation_id: str) -> CallOperation:
        for record in call.operations.values():
            if (client_context and record.client_context == client_context) or (
                operation_id and record.id == operation_id
            ):
                if operation_id and record.id is None:
                    record.id = operation_id
                return record
        record = CallOperation(client_context=client_context, id=operation_id or None)
        call.operations[client_context or operation_id or str(uuid.uuid4())] = record
        return record

    def _complete(self, call: ManagedCall | None, operation: CommsOperation, operation_id: str | None) -> None:
        """An operation finished: resolve whoever waits for it, record it once, tell the Bot once."""
        context = operation.client_context
        pending = (self._by_context.get(context) if context else None) or (
            self._by_operation_id.get(operation_id) if operation_id else None
        )
        if pending is not None:
            self._forget(pending)
            if not pending.future.done():
                pending.future.set_result(operation)
        if call is None:
            return
        record = self._operation_record(
            call, context or (pending.client_context if pending else None), operation_id or ""
        )
        if record.done:
            return  # a duplicate completion
        record.status = operation.status
        record.result_info = operation.result_info
        record.kind = record.kind or (operation.odata_type or "").rpartition(".")[2] or None
        record.finished = _wall()
        record.last = operation
        self._hook(call, "on_operation_completed", lambda: self._bot.on_operation_completed(call, operation))

    async def _expire(self, pending: _PendingOperation, deadline: float) -> None:
        await self._clock.sleep(deadline - self._clock.now())
        self._fail(pending, OperationTimeoutError(f"operation {pending.client_context} did not complete in time"))

    def _fail(self, pending: _PendingOperation, error: BaseException) -> None:
        self._forget(pending)
        if not pending.future.done():
            pending.future.set_exception(error)

    def _forget(self, pending: _PendingOperation) -> None:
        self._by_context.pop(pending.client_context, None)
        if pending.operation_id:
            self._by_operation_id.pop(pending.operation_id, None)
        if pending.timer is not None and pending.timer is not asyncio.current_task():
            pending.timer.cancel()

    # -- roster ----------------------------------------------------------------------------------------------------

    def _on_roster(self, event: RosterUpdated) -> None:
        call = self._calls.get(event.call_id)
        if call is None:
            logger.debug("call %s: roster for an unknown call ignored", event.call_id)
            return
        participants, removed, sequence, wrapped = _roster_items(event)
        if sequence is not None and call.roster_sequence is not None and sequence < call.roster_sequence:
            logger.debug("call %s: stale roster %d ignored (at %d)", call.id, sequence, call.roster_sequence)
            return
        delta = (
            wrapped
            or call.delta_roster
            or bool(removed)
            or event.change_type in (ChangeType.CREATED, ChangeType.DELETED)
        )
        joined: list[Participant] = []
        left: list[Participant] = []
        if delta:
            for participant in participants:
                key = _participant_key(participant)
                if key is None:
                    continue
                number = participant.roster_sequence_number
                known = call._participant_sequence.get(key)
                if number is not None and known is not None and number <= known:
                    continue  # stale or duplicate for this participant
                if number is not None:
                    call._participant_sequence[key] = number
                if id(participant) in removed:
                    gone = call.roster.pop(key, None)
                    if gone is not None:
                        left.append(gone)
                else:
                    if key not in call.roster:
                        joined.append(participant)
                    call.roster[key] = participant
        else:
            roster = {key: p for p in participants if (key := _participant_key(p)) is not None}
            left = [p for key, p in call.roster.items() if key not in roster]
            joined = [p for key, p in roster.items() if key not in call.roster]
            call.roster = roster
        if sequence is not None:
            call.roster_sequence = max(sequence, call.roster_sequence or sequence)
        if joined or left:
            # The bot's own leg is not a participant whose audio it records.
            others = [p for p in call.roster.values() if p.id and p.id != call.my_participant_id]
            self._media.roster_changed(call.id, [_roster_entry(p) for p in others])
            logger.info("call %s: roster +%d -%d (%d present)", call.id, len(joined), len(left), len(call.roster))
            self._hook(call, "on_participants_changed", lambda: self._bot.on_participants_changed(call, joined, left))

    # -- tones -----------------------------------------------------------------------------------------------------

    def _record_tone(self, call: ManagedCall, tone: ToneInfo) -> None:
        if tone.sequence_id is not None and any(t.sequence_id == tone.sequence_id for t in call.tones):
            return
        record = ToneRecord(
            tone=tone.tone or "",
            sequence_id=tone.sequence_id,
            received=_wall(),
            call_time=(self._clock.now() - call.established_at) if call.established_at is not None else None,
        )
        call.tones.append(record)
        self._hook(call, "on_tone", lambda: self._bot.on_tone(call, record))

    # -- the media plane's news (MediaListener) --------------------------------------------------------------------

    def on_tone(self, event: ToneEvent) -> None:
        """A DTMF digit heard in a participant's audio: recorded on the call and given to ``Bot.on_tone``."""
        call = self._calls.get(event.call_id)
        if call is None:
            return
        record = ToneRecord(
            tone=event.digit,
            sequence_id=None,
            received=_wall(),
            call_time=event.start_s,
            participant_id=event.participant_id,
            source="inband",
        )
        call.tones.append(record)
        self._hook(call, "on_tone", lambda: self._bot.on_tone(call, record))

    def on_speech(self, event: SpeechEvent) -> None:
        """A participant's speech segment closed: given to ``Bot.on_speech``."""
        call = self._calls.get(event.call_id)
        if call is not None:
            call.speech_segments += 1
            self._hook(call, "on_speech", lambda: self._bot.on_speech(call, event))

    def on_transcript(self, entry: TranscriptEntry) -> None:
        """A speech segment of the call was transcribed: given to ``Bot.on_transcript``."""
        call = self._calls.get(entry.call_id)
        if call is not None:
            self._hook(call, "on_transcript", lambda: self._bot.on_transcript(call, entry))

    def on_media_error(self, call_id: str, message: str) -> None:
        """Recording failed: the call goes on, and its recording status ends as ``failed``."""
        call = self._calls.get(call_id)
        if call is not None:
            call.media_failed = True
            call.note = message

    def on_media_lost(self, call_id: str, reason: str) -> None:
        """The call's media publishers all vanished and none came back: hang the call up (a call that already
        ended here only has its media released)."""
        call = self._calls.get(call_id)
        if call is None or call.state is CallPhase.TERMINATED:
            self._spawn(self._release_media(call_id), f"release {call_id}", call_id)
            return
        if call.ended_or_ending:
            return  # its end is under way; the terminated notification releases the media
        call.note = f"media lost ({reason}): its audio publishers vanished and none came back"
        logger.warning("call %s: %s; hanging up", call.id, call.note)
        self._spawn(self._hang_up_lost(call), f"hang up {call.id}", call.id)

    async def _hang_up_lost(self, call: ManagedCall) -> None:
        try:
            await self.hang_up(call.id)
        except GraphError as exc:
            # Nothing reaches the call any more: end it here so its media is finished and its timers stop.
            logger.warning("call %s: hang-up after the media was lost failed: %s; ending the call here", call.id, exc)
            self._finish(call, None, f"{call.note}; the hang-up failed: {exc}")

    # -- compliance recording --------------------------------------------------------------------------------------

    def _decide_gate(self, call: ManagedCall, allowed: bool) -> None:
        if not call.recording_decided:
            self._media.recording_decided(call.id, allowed)
        call._decide_gate(allowed)

    async def _announce_recording(self, call: ManagedCall) -> None:
        """Compliance mode: updateRecordingStatus(recording); open the gate only if Teams accepted it."""
        reason: str | None = None
        try:
            future = await self.run_operation(
                call.id,
                lambda context: self._graph.update_recording_status(
                    call.id, RecordingStatus.RECORDING, client_context=context
                ),
                kind="updateRecordingStatus",
            )
            operation = await future
            if operation.status != OperationStatus.COMPLETED:
                info = operation.result_info
                reason = f"updateRecordingStatus {operation.status}" + (f": {info.message}" if info else "")
        except (GraphError, CallError) as exc:
            reason = f"updateRecordingStatus failed: {exc}"
        if call.state is CallPhase.TERMINATED or call.recording_decided:
            return
        allowed = reason is None
        if allowed:
            call.recording_status = RecordingStatus.RECORDING
            logger.info("call %s: recording announced; gate open", call.id)
        else:
            call.note = reason
            logger.warning("call %s: %s; recording gate stays closed", call.id, reason)
        self._decide_gate(call, allowed)
        self._hook(call, "on_recording_status", lambda: self._bot.on_recording_status(call, allowed, reason))

    # -- timers ----------------------------------------------------------------------------------------------------

    async def _keepalive_loop(self, call: ManagedCall) -> None:
        due = self._clock.now() + self._config.keepalive_interval
        while True:
            await self._clock.sleep(due - self._clock.now())
            if call.ended_or_ending:
                return
            due += self._config.keepalive_interval
            self._spawn(self._keep_alive(call), f"keepAlive {call.id}", call.id)

    async def _keep_alive(self, call: ManagedCall) -> None:
        try:
            await self._graph.keep_alive(call.id)
        except GraphNotFoundError:
            self._finish(call, None, "keepAlive: Graph no longer knows the call (404)")
        except GraphError as exc:
            logger.warning("call %s: keepAlive failed: %s", call.id, exc)

    async def _watchdog(self, call: ManagedCall) -> None:
        """Reconcile the call by GET whenever nothing was heard about it for ``reconcile_after``."""
        checked = call.last_heard
        while call.state is not CallPhase.TERMINATED:
            wait = max(call.last_heard, checked) + self._config.reconcile_after - self._clock.now()
            if wait > 0:
                await self._clock.sleep(wait)
                continue
            checked = self._clock.now()
            self._spawn(self._reconcile(call), f"reconcile {call.id}", call.id)

    async def _reconcile(self, call: ManagedCall) -> None:
        logger.info("call %s: nothing heard for %gs; checking with Graph", call.id, self._config.reconcile_after)
        try:
            resource = await self._graph.get_call(call.id)
        except GraphNotFoundError:
            self._finish(call, None, "reconciled: Graph no longer knows the call (404)")
            return
        except GraphError as exc:
            logger.warning("call %s: reconciliation GET failed: %s", call.id, exc)
            return
        if call.state is CallPhase.TERMINATED:
            return
        self._merge(call, resource)
        if (phase := phase_for_graph_state(resource.state)) is not None:
            self._move(call, phase, resource)

    # -- plumbing --------------------------------------------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str, call_id: str) -> asyncio.Task[Any]:
        """A background task of the call; it and its failure report log with the call's id (and no other's)."""
        context = context_with_ids(call_id=call_id, participant_id=None, session_id=None)
        task = asyncio.get_running_loop().create_task(coro, name=name, context=context)
        self._tasks.add(task)
        task.add_done_callback(self._task_done, context=context)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            logger.error("background task %s failed", task.get_name(), exc_info=error)

    def _timer(self, call: ManagedCall, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """A long-lived task of the call (keepAlive, watchdog, operation timeout), cancelled when it ends."""
        task = asyncio.get_running_loop().create_task(
            coro,
            name=f"timer {call.id}",
            context=context_with_ids(call_id=call.id, participant_id=None, session_id=None),
        )
        timers = self._timers.setdefault(call.id, set())
        timers.add(task)
        task.add_done_callback(timers.discard)
        return task

    def _hook(self, call: ManagedCall, name: str, run: Callable[[], Awaitable[object]]) -> None:
        lane = self._lanes.get(call.id)
        if lane is None:
            lane = self._lanes[call.id] = _HookLane(call.id)
        lane.queue.append((name, run))
        if lane.task is None or lane.task.done():
            lane.task = self._spawn(self._run_lane(lane), f"hooks {call.id}", call.id)

    async def _run_lane(self, lane: _HookLane) -> None:
        while lane.queue:
            name, run = lane.queue.popleft()
            try:
                await run()
            except Exception:
                logger.exception("call %s: Bot.%s raised", lane.call_id, name)
        if self._lanes.get(lane.call_id) is lane:
            del self._lanes[lane.call_id]

    async def _release_media(self, call_id: str) -> None:
        try:
            await self._media.release(call_id)
        except Exception:
            logger.exception("call %s: releasing media failed", call_id)


def _consume(future: asyncio.Future[CommsOperation]) -> None:
    if not future.cancelled():
        future.exception()


def _roster_entry(participant: Participant) -> RosterEntry:
    """What the media plane needs of a participant: id, display name, audio sourceIds."""
    name = None
    for _, identity in identities(participant.info.identity if participant.info else None):
        if identity.display_name:
            name = identity.display_name
            break
    sources = tuple(
        stream.source_id
        for stream in participant.media_streams or []
        if stream.source_id and (stream.media_type or "audio") == "audio"
    )
    return RosterEntry(participant_id=participant.id or "", display_name=name, source_ids=sources)


def _participant_key(participant: Participant) -> str | None:
    """The roster key: the participant id, else (pending invitations) the first identity id."""
    if participant.id:
        return participant.id
    for _, identity in identities(participant.info.identity if participant.info else None):
        if identity.id:
            return f"identity:{identity.id}"
    return None


def _roster_items(event: RosterUpdated) -> tuple[list[Participant], set[int], int | None, bool]:
    """Participants, ids (``id()``) of the removed ones, the update's sequence number, whether it is a delta wrapper.

    Handles a ``deltaParticipants`` wrapper (``sequenceNumber`` + ``participants``) as well as plain participant
    lists; a plain list's sequence is the highest ``rosterSequenceNumber`` it carries.
    """
    participants = list(event.participants)
    removed = {id(p) for p in event.removed}
    wrapped = False
    sequence: int | None = None
    if len(participants) == 1 and isinstance(extra := participants[0].model_extra, dict) and "participants" in extra:
        wrapped = True
        inner = extra.get("participants")
        raw_sequence = extra.get("sequenceNumber")
        sequence = int(raw_sequence) if isinstance(raw_sequence, int | str) and str(raw_sequence).isdigit() else None
        participants = (
            [Participant.from_graph(item) for item in inner if isinstance(item, Mapping)]
            if isinstance(inner, list)
            else []
        )
        deleted = event.change_type == ChangeType.DELETED
        removed = {id(p) for p in participants if deleted or p.is_removed}
    numbers = [p.roster_sequence_number for p in participants if p.roster_sequence_number is not None]
    if sequence is None and numbers:
        sequence = max(numbers)
    return participants, removed, sequence, wrapped
