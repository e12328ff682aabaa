"""The one table of which application permission each emulated Graph operation needs.

Sources: the "Permissions" section of each operation's Microsoft Graph v1.0 page (application permissions) and the
project's ARCHITECTURE permissions table. Where the published include file misspells a permission
(``Calls.InitiateGroupCall.All``), the real role name is used.

Call-scoped operations (get, delete, answer, playPrompt, ...) are documented with the note "permissions are checked when
the call is created; no additional permission check is made when calling this API"; the sandbox mirrors that by
checking ownership instead (a call is visible only to the app it belongs to) and lists them as ``CALL_SCOPED``.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Final

__all__ = [
    "ALL_PERMISSIONS",
    "CALL_SCOPED",
    "OPERATION_PERMISSIONS",
    "SUBSCRIPTION_RESOURCE_PERMISSIONS",
    "missing_permission",
]

#: Every application permission the default sandbox app is granted (the ARCHITECTURE table).
ALL_PERMISSIONS: Final[tuple[str, ...]] = (
    "Calls.JoinGroupCallsAsGuest.All",
    "Calls.JoinGroupCalls.All",
    "Calls.Initiate.All",
    "Calls.InitiateGroupCalls.All",
    "Calls.AccessMedia.All",
    "OnlineMeetings.ReadWrite.All",
    "OnlineMeetings.Read.All",
    "Presence.Read",
    "Presence.Read.All",
    "Presence.ReadWrite.All",
    "CallRecords.Read.All",
)

#: Marker for operations whose permission was checked when the call was created.
CALL_SCOPED: Final[tuple[str, ...]] = ()

_JOIN = ("Calls.JoinGroupCalls.All", "Calls.JoinGroupCallsAsGuest.All")
_PRESENCE_READ = ("Presence.Read.All", "Presence.ReadWrite.All")
_MEETINGS_READ = ("OnlineMeetings.Read.All", "OnlineMeetings.ReadWrite.All")

#: operation → the application permissions of which ANY one grants it (empty: checked at call creation).
OPERATION_PERMISSIONS: Final[dict[str, tuple[str, ...]]] = {
    "calls.create.p2p": ("Calls.Initiate.All",),
    "calls.create.group": ("Calls.InitiateGroupCalls.All",),
    "calls.create.join": _JOIN,
    "calls.appHostedMedia": ("Calls.AccessMedia.All",),
    "calls.get": CALL_SCOPED,
    "calls.delete": CALL_SCOPED,
    "calls.answer": CALL_SCOPED,
    "calls.reject": CALL_SCOPED,
    "calls.redirect": CALL_SCOPED,
    "calls.transfer": CALL_SCOPED,
    "calls.keepAlive": CALL_SCOPED,
    "calls.mute": CALL_SCOPED,
    "calls.unmute": CALL_SCOPED,
    "calls.updateRecordingStatus": CALL_SCOPED,
    "calls.changeScreenSharingRole": CALL_SCOPED,
    "calls.playPrompt": CALL_SCOPED,
    "calls.recordResponse": CALL_SCOPED,
    "calls.cancelMediaProcessing": CALL_SCOPED,
    "calls.subscribeToTone": CALL_SCOPED,
    "calls.sendDtmfTones": CALL_SCOPED,
    "calls.operations.get": CALL_SCOPED,
    "participants.list": CALL_SCOPED,
    "participants.get": CALL_SCOPED,
    "participants.mute": CALL_SCOPED,
    "participants.muteAll": CALL_SCOPED,
    "participants.delete": CALL_SCOPED,
    "participants.startHoldMusic": CALL_SCOPED,
    "participants.stopHoldMusic": CALL_SCOPED,
    "participants.invite": ("Calls.InitiateGroupCalls.All",),
    "onlineMeetings.create": ("OnlineMeetings.ReadWrite.All",),
    "onlineMeetings.createOrGet": ("OnlineMeetings.ReadWrite.All",),
    "onlineMeetings.get": _MEETINGS_READ,
    "onlineMeetings.list": _MEETINGS_READ,
    "presence.get": _PRESENCE_READ,
    "presence.getPresencesByUserId": _PRESENCE_READ,
    "presence.setPresence": ("Presence.ReadWrite.All",),
    "presence.clearPresence": ("Presence.ReadWrite.All",),
    "presence.setUserPreferredPresence": ("Presence.ReadWrite.All",),
    "presence.clearUserPreferredPresence": ("Presence.ReadWrite.All",),
    "presence.setStatusMessage": ("Presence.ReadWrite.All",),
    "callRecords.get": ("CallRecords.Read.All",),
    "callRecords.sessions.list": ("CallRecords.Read.All",),
}

#: subscription resource prefix → the permissions of which any one allows subscribing to it.
SUBSCRIPTION_RESOURCE_PERMISSIONS: Final[dict[str, tuple[str, ...]]] = {
    "communications/callRecords": ("CallRecords.Read.All",),
    "communications/presences": _PRESENCE_READ,
}


def missing_permission(operation: str, roles: Collection[str]) -> tuple[str, ...] | None:
    """The permissions ``operation`` accepts when ``roles`` holds none of them, else ``None``."""
    needed = OPERATION_PERMISSIONS[operation]
    if not needed or any(role in roles for role in needed):
        return None
    return needed
