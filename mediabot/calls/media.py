"""``MediaProvider``: the seam through which the call plane drives the media plane.

The call plane asks for a call's ``mediaConfig`` before it answers or creates the call, binds it to the call's id
once Graph gave one, and tells the media plane what only signaling knows: the roster (which ``sourceId`` is whom),
the compliance gate, state changes, prompts to play; finally it releases the call's media.

:class:`ServiceHostedMedia` lets Graph host the media (prompts, DTMF, recordResponse): every step is a no-op.
:class:`mediabot.media.engine.MediaEngine` is the app-hosted provider (its blob points at our WHIP endpoint).
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from mediabot.media.session import RosterEntry

__all__ = ["MediaProvider", "RosterEntry", "ServiceHostedMedia"]


@runtime_checkable
class MediaProvider(Protocol):
    """What the CallManager needs from a media plane."""

    async def media_config(self, call_id: str | None, *, gated: bool = False) -> dict[str, Any]:
        """The ``mediaConfig`` for the call (``call_id`` None: a call being created); ``gated``: compliance mode."""
        ...

    def bind(self, media_config: dict[str, Any], call_id: str) -> None:
        """The call created with ``media_config`` now has its id."""
        ...

    async def discard(self, media_config: dict[str, Any]) -> None:
        """Creating the call with ``media_config`` failed: free what was prepared."""
        ...

    def roster_changed(self, call_id: str, entries: list[RosterEntry]) -> None:
        """The call's roster now is ``entries``."""
        ...

    def recording_decided(self, call_id: str, allowed: bool) -> None:
        """The compliance gate of the call was decided."""
        ...

    def call_event(self, call_id: str, kind: str, **data: Any) -> None:
        """Something the call's event log should have (a state change)."""
        ...

    def hosts(self, call_id: str) -> bool:
        """Whether prompts for this call are played by this provider (else by Graph)."""
        ...

    async def play_prompt(self, call_id: str, uri: str) -> float:
        """Play the audio at ``uri``; returns the seconds played once done."""
        ...

    async def release(self, call_id: str) -> None:
        """The call ended: free whatever was prepared for it."""
        ...


class ServiceHostedMedia:
    """Media hosted by Graph: ``serviceHostedMediaConfig``; nothing else to do."""

    async def media_config(self, call_id: str | None, *, gated: bool = False) -> dict[str, Any]:
        """``{"@odata.type": "#microsoft.graph.serviceHostedMediaConfig"}``."""
        return {"@odata.type": "#microsoft.graph.serviceHostedMediaConfig"}

    def bind(self, media_config: dict[str, Any], call_id: str) -> None:
        """Nothing to bind."""

    async def discard(self, media_config: dict[str, Any]) -> None:
        """Nothing to free."""

    def roster_changed(self, call_id: str, entries: list[RosterEntry]) -> None:
        """Graph hosts the media; the roster matters only to the call plane."""

    def recording_decided(self, call_id: str, allowed: bool) -> None:
        """Nothing records here."""

    def call_event(self, call_id: str, kind: str, **data: Any) -> None:
        """No event log here."""

    def hosts(self, call_id: str) -> bool:
        """Never: Graph plays prompts."""
        return False

    async def play_prompt(self, call_id: str, uri: str) -> float:
        """Not used: :meth:`hosts` is False."""
        raise NotImplementedError("service-hosted prompts are played by Graph")

    async def release(self, call_id: str) -> None:
        """Nothing to free."""
