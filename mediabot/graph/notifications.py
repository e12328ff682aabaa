"""Parsing of what Graph POSTs to the bot: commsNotifications (call callbacks) and change notifications (webhooks).

This module owns turning those bodies into typed values. A commsNotifications body becomes one
:class:`CommsEvent` per ``value[]`` item, in order:

==========================  ===================================================================================
event                       when
==========================  ===================================================================================
:class:`CallTerminated`     a call resource with changeType ``deleted`` or state ``terminated``
:class:`ToneReceived`       a call update carrying ``toneInfo`` (a subclass of :class:`CallUpdated`: it is one)
:class:`CallUpdated`        any other call resource (incoming, establishing, established, transferring, ...)
:class:`RosterUpdated`      participant resources (``/participants``, full or delta roster)
:class:`OperationUpdated`   a commsOperation (``/operations/{id}``), typed by its ``@odata.type``
:class:`ContentSharingUpdated`  content-sharing sessions (``/contentSharingSessions``)
:class:`UnknownNotification`    anything else, kept rather than dropped
==========================  ===================================================================================

``ToneReceived`` is emitted *instead of* a plain ``CallUpdated`` but is one, so code that tracks call state keeps
seeing every update while DTMF handlers match ``ToneReceived`` (in a ``match``, put it before ``CallUpdated``).

All three documented shapes are read: current (``@odata.type`` + ``resourceUrl``), mixed (``resource`` and
``resourceUrl``), legacy beta (only ``resource``, under ``/app/calls``); resource paths are normalised to
``/communications/calls/{id}/...``. The kind of an item is taken from its ``resourceData`` ``@odata.type`` when
that names a model, else from the path.

Every failure to understand a body raises :class:`~mediabot.NotificationError`, never anything else.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from pydantic import ValidationError

from mediabot._errors import NotificationError
from mediabot.graph.models import (
    Call,
    CallState,
    ChangeType,
    CommsOperation,
    ContentSharingSession,
    GraphModel,
    Participant,
    ResultInfo,
    ToneInfo,
    lookup_graph_type,
)

__all__ = [
    "GRAPH_ID_PATTERN",
    "CallTerminated",
    "CallUpdated",
    "ChangeNotification",
    "ChangeNotificationCollection",
    "CommsEvent",
    "ContentSharingUpdated",
    "EncryptedContent",
    "OperationUpdated",
    "RosterUpdated",
    "ToneReceived",
    "UnknownNotification",
    "is_graph_id",
    "normalize_resource_path",
    "parse_change_notification_collection",
    "parse_change_notifications",
    "parse_comms_notifications",
]

_CALLS_PREFIX = ("communications", "calls")
_LEGACY_CALLS_PREFIX = ("app", "calls")
_VERSION_SEGMENTS = frozenset({"v1.0", "beta"})
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
# An id that goes into a Graph URL path as one segment: no separator, query, fragment, escape, space or control
# character, and not only dots ("." and ".." would move the URL to another resource: httpx normalises them away).
# Spelled out rather than with \s, which means other characters to ECMAScript, Python and Rust regexes.
_NOT_IN_ID = r"/?#%\\\x00-\x20\x7f-\x9f"
GRAPH_ID_PATTERN = rf"^[^{_NOT_IN_ID}]*[^.{_NOT_IN_ID}][^{_NOT_IN_ID}]*$"
_GRAPH_ID = re.compile(GRAPH_ID_PATTERN)


def is_graph_id(value: str) -> bool:
    """Whether ``value`` can be one path segment of a Graph URL as it is (see :data:`GRAPH_ID_PATTERN`)."""
    return _GRAPH_ID.fullmatch(value) is not None


# --------------------------------------------------------------------------------------------------------------
# commsNotifications events
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class CommsEvent:
    """One item of a commsNotifications body; ``call_id`` is empty for resources outside a call."""

    call_id: str
    change_type: str
    resource_url: str
    raw: dict[str, Any] = field(repr=False)


@dataclass(frozen=True, kw_only=True)
class CallUpdated(CommsEvent):
    """A call was created or changed (incoming, establishing, established, transferring, ...)."""

    call: Call

    @property
    def state(self) -> str | None:
        """The call's state as sent (compare with :class:`~mediabot.graph.models.CallState`)."""
        return self.call.state


@dataclass(frozen=True, kw_only=True)
class ToneReceived(CallUpdated):
    """A call update carrying a DTMF tone (after ``subscribeToTone``)."""

    tone: ToneInfo


@dataclass(frozen=True, kw_only=True)
class CallTerminated(CommsEvent):
    """The call ended (changeType ``deleted`` or state ``terminated``); ``result_info`` says why."""

    call: Call
    result_info: ResultInfo | None


@dataclass(frozen=True, kw_only=True)
class RosterUpdated(CommsEvent):
    """Participants were added, changed or removed (full roster or delta)."""

    participants: list[Participant]

    @property
    def removed(self) -> list[Participant]:
        """Participants that left: all of them for changeType ``deleted``, else those with a removedState."""
        if self.change_type == ChangeType.DELETED:
            return list(self.participants)
        return [participant for participant in self.participants if participant.is_removed]

    @property
    def present(self) -> list[Participant]:
        """Participants that are (still) in the call."""
        removed = {id(participant) for participant in self.removed}
        return [participant for participant in self.participants if id(participant) not in removed]


@dataclass(frozen=True, kw_only=True)
class OperationUpdated(CommsEvent):
    """A commsOperation changed state (typically completed or failed, changeType ``deleted``)."""

    operation: CommsOperation
    operation_id: str


@dataclass(frozen=True, kw_only=True)
class ContentSharingUpdated(CommsEvent):
    """Content-sharing sessions started, changed or ended."""

    sessions: list[ContentSharingSession]


@dataclass(frozen=True, kw_only=True)
class UnknownNotification(CommsEvent):
    """A notification about a resource mediabot does not model; ``resource_data`` is kept as sent."""

    resource_data: Any = None


def normalize_resource_path(resource: str) -> str:
    """``/communications/calls/{id}/...`` form of a notification resource (legacy ``/app/calls``, URLs, no ``/``)."""
    text = resource.strip()
    if "://" in text:
        with contextlib.suppress(ValueError):  # e.g. a broken IPv6 host: keep the text as a path
            text = urlsplit(text).path
    segments = [segment for segment in text.split("/") if segment]
    if segments and segments[0].lower() in _VERSION_SEGMENTS:
        segments = segments[1:]
    if tuple(segment.lower() for segment in segments[:2]) == _LEGACY_CALLS_PREFIX:
        segments = [*_CALLS_PREFIX, *segments[2:]]
    return "/" + "/".join(segments)


def _load(payload: object) -> Any:
    if isinstance(payload, Mapping):
        return payload
    if isinstance(payload, bytes | bytearray | memoryview):
        try:
            payload = bytes(payload).decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise NotificationError(f"notification body is not valid UTF-8: {exc}") from exc
    if not isinstance(payload, str):
        raise NotificationError(f"notification body must be bytes, str or a mapping, not {type(payload).__name__}")
    try:
        value = json.loads(payload)
    except (ValueError, RecursionError) as exc:
        raise NotificationError(f"notification body is not valid JSON: {exc}") from exc
    if _SURROGATE_ESCAPE.search(payload) is not None and not _is_unicode(value):
        # json.loads makes an unpaired surrogate escape a str that no UTF-8 encoder (httpx, logs, files) takes.
        raise NotificationError("notification body has an unpaired UTF-16 surrogate escape")
    return value


def _is_unicode(value: Any) -> bool:
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except (UnicodeEncodeError, RecursionError):
        return False
    return True


def _body(payload: object) -> dict[str, Any]:
    """The body as a dict whose ``value`` is a list."""
    body = _load(payload)
    if not isinstance(body, Mapping):
        raise NotificationError(f"notification body must be a JSON object, not {type(body).__name__}")
    if not isinstance(body.get("value"), list):
        raise NotificationError("notification body has no 'value' list")
    return dict(body)


def _data_type(resource_data: Any) -> type[GraphModel] | None:
    """The model named by the resource data's @odata.type (first element for collections)."""
    if isinstance(resource_data, list):
        resource_data = next((item for item in resource_data if isinstance(item, Mapping)), None)
    if isinstance(resource_data, Mapping):
        return lookup_graph_type(resource_data.get("@odata.type"))
    return None


def _objects(resource_data: Any) -> list[Mapping[str, Any]]:
    if isinstance(resource_data, Mapping):
        return [resource_data]
    if isinstance(resource_data, list):
        return [item for item in resource_data if isinstance(item, Mapping)]
    return []


def _comms_event(index: int, item: Any) -> CommsEvent:
    if not isinstance(item, Mapping):
        raise NotificationError(f"notification value[{index}] is not an object")
    raw = dict(item)
    change_type = raw.get("changeType")
    if not isinstance(change_type, str) or not change_type:
        raise NotificationError(f"notification value[{index}] has no changeType")
    resource = raw.get("resourceUrl") or raw.get("resource")
    if not isinstance(resource, str) or not resource.strip():
        raise NotificationError(f"notification value[{index}] has no resourceUrl or resource")

    resource_url = normalize_resource_path(resource)
    segments = resource_url.strip("/").split("/")
    in_call = len(segments) >= 3 and tuple(segment.lower() for segment in segments[:2]) == _CALLS_PREFIX
    call_id = segments[2] if in_call else ""
    if in_call and not all(is_graph_id(segment) for segment in segments[2:]):
        # The ids of a call's resources go back into Graph URLs, and the call id names its recordings folder.
        raise NotificationError(f"notification value[{index}] has a malformed id in {resource_url!r}")
    below = [segment.lower() for segment in segments[3:]] if in_call else []
    common: dict[str, Any] = {
        "call_id": call_id,
        "change_type": change_type,
        "resource_url": resource_url,
        "raw": raw,
    }
    resource_data = raw.get("resourceData")
    if resource_data is not None and not isinstance(resource_data, Mapping | list):
        raise NotificationError(f"notification value[{index}] has a resourceData that is not an object or a list")
    data_type = _data_type(resource_data)

    def kind_is(model: type[GraphModel], segment: str | None) -> bool:
        if data_type is not None:
            return issubclass(data_type, model)
        return below[:1] == [segment] if segment is not None else not below

    if not in_call:
        return UnknownNotification(**common, resource_data=resource_data)
    try:
        if kind_is(Participant, "participants"):
            participants = [Participant.from_graph(obj) for obj in _objects(resource_data)]
            if not participants and len(below) == 2:
                participants = [Participant.from_graph({"id": segments[4]})]
            return RosterUpdated(**common, participants=participants)
        if kind_is(CommsOperation, "operations"):
            objects = _objects(resource_data)
            operation = CommsOperation.from_graph(objects[0] if objects else {})
            operation_id = operation.id or (segments[4] if len(below) == 2 else "")
            return OperationUpdated(**common, operation=operation, operation_id=operation_id)
        if kind_is(ContentSharingSession, "contentsharingsessions"):
            sessions = [ContentSharingSession.from_graph(obj) for obj in _objects(resource_data)]
            if not sessions and len(below) == 2:
                sessions = [ContentSharingSession.from_graph({"id": segments[4]})]
            return ContentSharingUpdated(**common, sessions=sessions)
        if kind_is(Call, None):
            objects = _objects(resource_data)
            call = Call.from_graph(objects[0] if objects else {})
            if change_type == ChangeType.DELETED or call.state == CallState.TERMINATED:
                return CallTerminated(**common, call=call, result_info=call.result_info)
            if call.tone_info is not None:
                return ToneReceived(**common, call=call, tone=call.tone_info)
            return CallUpdated(**common, call=call)
    except (ValidationError, RecursionError) as exc:
        raise NotificationError(
            f"notification value[{index}] ({resource_url}) has malformed resourceData: {exc}"
        ) from exc
    return UnknownNotification(**common, resource_data=resource_data)


def parse_comms_notifications(payload: bytes | str | Mapping[str, Any]) -> list[CommsEvent]:
    """Typed events of a commsNotifications body (bytes, text or parsed JSON), one per ``value[]`` item."""
    return [_comms_event(index, item) for index, item in enumerate(_body(payload)["value"])]


# --------------------------------------------------------------------------------------------------------------
# Change notifications (subscriptions: callRecords, presence)
# --------------------------------------------------------------------------------------------------------------


class EncryptedContent(GraphModel):
    """Encrypted resource data of a rich change notification (``includeResourceData``)."""

    data: str | None = None
    data_signature: str | None = None
    data_key: str | None = None
    encryption_certificate_id: str | None = None
    encryption_certificate_thumbprint: str | None = None


class ChangeNotification(GraphModel):
    """One change or lifecycle notification of a subscription; ``resource_data`` is typed by its @odata.type."""

    id: str | None = None
    subscription_id: str | None = None
    client_state: str | None = None
    change_type: str | None = None
    resource: str | None = None
    resource_data: GraphModel | None = None
    tenant_id: str | None = None
    organization_id: str | None = None
    subscription_expiration_date_time: str | None = None
    lifecycle_event: str | None = None
    encrypted_content: EncryptedContent | None = None


class ChangeNotificationCollection(GraphModel):
    """A change-notification POST body: the notifications plus the ``validationTokens`` to check."""

    value: list[ChangeNotification]
    validation_tokens: list[str] | None = None


def parse_change_notification_collection(payload: bytes | str | Mapping[str, Any]) -> ChangeNotificationCollection:
    """The whole change-notification body; each item must be an object with a ``subscriptionId``."""
    body = _body(payload)
    for index, item in enumerate(body["value"]):
        if not isinstance(item, Mapping):
            raise NotificationError(f"change notification value[{index}] is not an object")
        subscription_id = item.get("subscriptionId")
        if not isinstance(subscription_id, str) or not subscription_id:
            raise NotificationError(f"change notification value[{index}] has no subscriptionId")
    try:
        return ChangeNotificationCollection.from_graph(body)
    except (ValidationError, RecursionError) as exc:
        raise NotificationError(f"malformed change notification body: {exc}") from exc


def parse_change_notifications(payload: bytes | str | Mapping[str, Any]) -> list[ChangeNotification]:
    """The notifications of a change-notification body (see :func:`parse_change_notification_collection`)."""
    return parse_change_notification_collection(payload).value
