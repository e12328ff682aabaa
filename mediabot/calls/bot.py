"""``Bot``: the extension point of mediabot. Subclass it and override the hooks your product needs."""

from __future__ import annotations

from mediabot.calls.call import ManagedCall, ToneRecord
from mediabot.calls.policy import AnswerDecision
from mediabot.graph.models import CallRecord, CommsOperation, Participant
from mediabot.media.session import SpeechEvent
from mediabot.transcribe.base import TranscriptEntry

__all__ = ["Bot"]


class Bot:
    """Your bot: async hooks the :class:`~mediabot.calls.CallManager` calls as calls come, change and go.

    Every hook is a coroutine with a no-op default, so override only what you need::

        from mediabot.calls import AnswerDecision, Bot

        class Receptionist(Bot):
            def __init__(self) -> None:
                self.manager: CallManager | None = None  # set after building the CallManager

            async def on_incoming_call(self, call):
                if "+15550100" in call.caller_ids():
                    return AnswerDecision.reject("busy")
                return None  # let the configured AnswerPolicy decide

            async def on_established(self, call):
                await self.manager.subscribe_to_tones(call.id)
                done = await self.manager.play_prompt(call.id, "https://example.com/welcome.wav")
                await done  # the operation completed (or failed): done.result().status

            async def on_tone(self, call, tone):
                if tone.tone == "tone0":
                    await self.manager.hang_up(call.id)

    How hooks run:

    * **In order, per call.** Hooks of one call run one at a time, in the order their notifications arrived;
      hooks of different calls run concurrently. A hook may await Graph operations (``play_prompt`` and wait for
      its completion): notifications keep being processed meanwhile, later hooks of the same call wait.
    * **Off the notification path.** The service acknowledges Graph before hooks run; a slow hook never delays
      a callback response, but it does delay the later hooks of its call.
    * **Failures are contained.** An exception in a hook is logged and ignored; the call goes on.
    * **Live view.** ``call`` is the live :class:`~mediabot.calls.ManagedCall`; by the time a hook runs the call
      may have moved on (``call.state`` can already be ``terminated``).

    ``on_incoming_call`` is special: it decides whether to answer and must return quickly, because Graph drops
    calls not answered within about 15 seconds. If it has not returned by the answer deadline the call is left
    unanswered (and logged). Do slow preparation in ``on_established``.
    """

    async def on_incoming_call(self, call: ManagedCall) -> AnswerDecision | None:
        """Decide on a ringing call: an :class:`AnswerDecision`, or ``None`` to apply the ``AnswerPolicy``."""
        return None

    async def on_established(self, call: ManagedCall) -> None:
        """The call is established: media flows, operations (prompts, tones, transfer) can be started."""

    async def on_participants_changed(
        self, call: ManagedCall, joined: list[Participant], left: list[Participant]
    ) -> None:
        """The roster changed: ``joined`` entered the call, ``left`` left it (``call.roster`` is the new roster)."""

    async def on_tone(self, call: ManagedCall, tone: ToneRecord) -> None:
        """A DTMF tone: from Graph (``subscribe_to_tones``; ``tone.source == "graph"``, no duplicates of a sequence
        id) or, with app-hosted media, heard in a participant's audio (``"inband"``, with ``participant_id``)."""

    async def on_speech(self, call: ManagedCall, event: SpeechEvent) -> None:
        """App-hosted media: a participant's speech segment closed (``event.segment`` has its timeline and audio)."""

    async def on_transcript(self, call: ManagedCall, entry: TranscriptEntry) -> None:
        """A participant's speech segment was transcribed (``entry.text``, call-timeline ``start``/``end``)."""

    async def on_operation_completed(self, call: ManagedCall, operation: CommsOperation) -> None:
        """An operation of the call finished: ``operation.status`` is ``completed`` or ``failed``."""

    async def on_recording_status(self, call: ManagedCall, allowed: bool, reason: str | None) -> None:
        """Compliance mode: the recording gate was decided; ``allowed=False`` means media must persist nothing."""

    async def on_terminated(self, call: ManagedCall) -> None:
        """The call ended; ``call.result_info`` says why (when Graph said), ``call.note`` when we ended it locally."""

    async def on_call_record(self, record: CallRecord) -> None:
        """Graph published the call record of a finished call (needs ``MEDIABOT_SUBSCRIBE_CALL_RECORDS``)."""
