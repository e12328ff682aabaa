"""``MediaProvider``: the seam through which the call plane asks the media plane for a call's ``mediaConfig``.

The default, :class:`ServiceHostedMedia`, lets Graph host the media (prompts, DTMF, recordResponse). The media
plane replaces it with a provider returning ``appHostedMediaConfig`` whose blob points at its WHIP endpoint.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

__all__ = ["MediaProvider", "ServiceHostedMedia"]


@runtime_checkable
class MediaProvider(Protocol):
    """Gives the ``mediaConfig`` for answering or creating a call and releases what it set up when the call ends."""

    async def media_config(self, call_id: str | None) -> dict[str, Any]:
        """The ``mediaConfig`` body for the call (``None``: a call being created, whose id Graph has not given yet)."""
        ...

    async def release(self, call_id: str) -> None:
        """The call ended: free whatever was prepared for it."""
        ...


class ServiceHostedMedia:
    """Media hosted by Graph: ``serviceHostedMediaConfig``, nothing to release."""

    async def media_config(self, call_id: str | None) -> dict[str, Any]:
        """``{"@odata.type": "#microsoft.graph.serviceHostedMediaConfig"}``."""
        return {"@odata.type": "#microsoft.graph.serviceHostedMediaConfig"}

    async def release(self, call_id: str) -> None:
        """Nothing to free."""
