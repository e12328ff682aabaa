"""Turning a Teams meeting join link into what Graph's create-call needs to join that meeting."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

__all__ = ["MeetingJoinInfo", "parse_join_web_url"]

_MEETUP_PATH = re.compile(r"^/l/meetup-join/(?P<thread>[^/]+)/(?P<message>[^/?]+)")
_MEET_PATH = re.compile(r"^/meet/(?P<id>\d+)/?$")


@dataclass(frozen=True)
class MeetingJoinInfo:
    """What a join link says: a chat thread + organizer (classic links) or a meeting id + passcode (short links)."""

    thread_id: str | None = None
    message_id: str | None = None
    organizer_id: str | None = None
    tenant_id: str | None = None
    join_meeting_id: str | None = None
    passcode: str | None = None

    @property
    def by_meeting_id(self) -> bool:
        """True for short links, joined by meeting id and passcode rather than by chat thread."""
        return self.join_meeting_id is not None


def parse_join_web_url(url: str) -> MeetingJoinInfo:
    """Parse a ``/l/meetup-join/...`` link (thread, message, Tid/Oid context) or a ``/meet/<id>?p=<passcode>`` link."""
    parts = urlsplit(url.strip())
    if parts.scheme != "https" or not parts.netloc:
        raise ValueError(f"not an https meeting link: {url!r}")
    path = unquote(parts.path)
    query = parse_qs(parts.query)
    if match := _MEET_PATH.match(path):
        passcode = query.get("p", [None])[0]
        return MeetingJoinInfo(join_meeting_id=match["id"], passcode=passcode)
    if match := _MEETUP_PATH.match(path):
        context: dict[str, object] = {}
        if raw_context := query.get("context", [None])[0]:
            try:
                loaded = json.loads(raw_context)
            except json.JSONDecodeError as exc:
                raise ValueError(f"the meeting link's context is not JSON: {raw_context!r}") from exc
            if isinstance(loaded, dict):
                context = loaded
        organizer = context.get("Oid")
        tenant = context.get("Tid")
        if not isinstance(organizer, str) or not isinstance(tenant, str):
            raise ValueError("the meeting link's context lacks the organizer (Oid) and tenant (Tid)")
        return MeetingJoinInfo(
            thread_id=match["thread"], message_id=match["message"], organizer_id=organizer, tenant_id=tenant
        )
    raise ValueError(f"not a Teams meeting join link: {url!r}")
