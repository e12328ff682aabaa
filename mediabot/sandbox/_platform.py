"""``CallPlatform``: what the calling platform tells a bot about its calls, and the platform's own timers.

Handlers change state in the store, then tell the platform what happened; the platform turns that into the
notification sequence Graph sends (through :class:`CallNotifier`) and runs the two platform timers:

- an incoming call not answered within ``answer_deadline`` ends (``deleted``, 408);
- a live call with no keepAlive for ``keepalive_timeout`` ends (``deleted``, 408).

Timers are ``loop.call_later`` handles, so tests configure short values instead of sleeping.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from ._notifications import (
    ANSWER_DEADLINE_RESULT,
    KEEPALIVE_EXPIRED_RESULT,
    call_notification,
    operation_notification,
    roster_notification,
    terminated_notification,
    tone_notification,
)
from ._notifier import CallNotifier
from ._store import SandboxStore

if TYPE_CHECKING:
    from ._director import ScenarioDirector

__all__ = ["CallPlatform"]

logger = logging.getLogger(__name__)


class CallPlatform:
    """Sends each call's notifications and ends calls on the answer deadline and keepAlive expiry."""

    def __init__(self, store: SandboxStore, notifier: CallNotifier, answer_deadline: float, keepalive: float) -> None:
        self._store = store
        self.notifier = notifier
        self._answer_deadline = answer_deadline
        self._keepalive = keepalive
        self._timers: dict[str, asyncio.TimerHandle] = {}
        #: runs scenarios (roster and media) on the calls they attach to
        self.director: ScenarioDirector | None = None

    async def aclose(self) -> None:
        """Cancel every timer, stop the scenarios' media and the notifier."""
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        if self.director is not None:
            await self.director.aclose()
        await self.notifier.aclose()

    # -- flows --------------------------------------------------------------------------------------------------
    def incoming(self, call: dict[str, Any], app_id: str) -> None:
        """A call rings the bot: ``created`` (state ``incoming``), and the answer deadline starts."""
        self._send(call, app_id, [call_notification("created", call)])
        self._arm(call["id"], self._answer_deadline, "incoming", ANSWER_DEADLINE_RESULT)

    def established(self, call_id: str, app_id: str) -> None:
        """A created or answered call connects: ``establishing``, ``established``, then the roster."""
        call = self._store.get_call(call_id, app_id)
        if self.director is not None:
            self.director.establishing(call, app_id)
        self._send(
            call,
            app_id,
            [call_notification("updated", {**call, "state": "establishing"})],
            [call_notification("updated", {**call, "state": "established"})],
            [roster_notification(call_id, self._store.participants(call_id, app_id))],
        )
        self._arm(call_id, self._keepalive, None, KEEPALIVE_EXPIRED_RESULT)
        if self.director is not None:
            self.director.established(call, app_id)

    def kept_alive(self, call_id: str) -> None:
        """A keepAlive request restarts the call's keepAlive timer."""
        if call_id in self._timers:
            self._arm(call_id, self._keepalive, None, KEEPALIVE_EXPIRED_RESULT)

    def ended(self, call: dict[str, Any], app_id: str, result_info: dict[str, Any]) -> None:
        """The call is gone (``call`` is its last snapshot): ``deleted`` with state ``terminated``."""
        timer = self._timers.pop(call["id"], None)
        if timer is not None:
            timer.cancel()
        if self.director is not None:
            self.director.ended(call["id"])
        if call.get("state") not in ("incoming", "terminated"):
            # As Graph does for a call that was up: "terminating" first, then the final "deleted".
            self._send(call, app_id, [call_notification("updated", {**call, "state": "terminating"})])
        self._send(call, app_id, [terminated_notification(call, result_info)])
        self._call_record_published(str(call.get("callChainId") or ""))

    def transferred(self, call: dict[str, Any], app_id: str, result_info: dict[str, Any]) -> None:
        """A transfer: ``transferring``, then ``transferAccepted``, then the bot's leg ends."""
        for phase in ("transferring", "transferAccepted"):
            self._send(call, app_id, [call_notification("updated", {**call, "state": phase})])
        self.ended(call, app_id, result_info)

    def _call_record_published(self, record_id: str) -> None:
        """Graph tells callRecords subscribers (of any app in the tenant) that a record was created."""
        if not record_id:
            return
        for subscription, owner in self._store.subscribers("communications/callRecords"):
            if "created" not in str(subscription.get("changeType", "")):
                continue
            item = {
                "subscriptionId": subscription["id"],
                "clientState": subscription.get("clientState"),
                "changeType": "created",
                "resource": f"communications/callRecords/{record_id}",
                "subscriptionExpirationDateTime": subscription.get("expirationDateTime"),
                "resourceData": {
                    "@odata.type": "#Microsoft.Graph.callrecord",
                    "@odata.id": f"communications/callRecords/{record_id}",
                    "id": record_id,
                },
                "tenantId": self._store.tenant_id,
            }
            self.notifier.send_change(subscription["id"], str(subscription["notificationUrl"]), owner, [item])

    def operation_completed(self, call_id: str, app_id: str, operation_id: str, roster: bool = False) -> None:
        """An operation finished: its final state on ``operations/{id}`` (and the roster when it changed it)."""
        call = self._store.get_call(call_id, app_id)
        operation = self._store.get_operation(call_id, app_id, operation_id)
        batches = [[operation_notification(call_id, operation)]]
        if roster:
            batches.append([roster_notification(call_id, self._store.participants(call_id, app_id))])
        self._send(call, app_id, *batches)

    def roster_changed(self, call_id: str, app_id: str) -> None:
        """The roster changed: ``updated`` on ``/participants``."""
        call = self._store.get_call(call_id, app_id)
        self._send(call, app_id, [roster_notification(call_id, self._store.participants(call_id, app_id))])

    def tones(self, call: dict[str, Any], app_id: str, received: list[tuple[int, str]]) -> None:
        """DTMF tones reached a call subscribed to them: one call ``updated`` with ``toneInfo`` per tone."""
        self._send(call, app_id, *([tone_notification(call, seq, tone)] for seq, tone in received))

    # -- internals ----------------------------------------------------------------------------------------------
    def _send(self, call: dict[str, Any], app_id: str, *batches: list[dict[str, Any]]) -> None:
        uri = str(call.get("callbackUri") or "")
        for batch in batches:
            self.notifier.send(call["id"], uri, app_id, batch)

    def _arm(self, call_id: str, delay: float, only_state: str | None, result: dict[str, Any]) -> None:
        previous = self._timers.pop(call_id, None)
        if previous is not None:
            previous.cancel()
        loop = asyncio.get_running_loop()
        self._timers[call_id] = loop.call_later(delay, self._expire, call_id, only_state, result)

    def _expire(self, call_id: str, only_state: str | None, result: dict[str, Any]) -> None:
        self._timers.pop(call_id, None)
        ended = self._store.expire_call(call_id, only_state)
        if ended is None:
            return
        call, owner = ended
        if self.director is not None:
            self.director.ended(call_id)
        logger.info("call %s ended by the platform: %s", call_id, result["message"])
        self._send(call, owner, [terminated_notification(call, result)])
