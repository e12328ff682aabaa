"""The one error tree of mediabot.

::

    MediaBotError
    ├── ConfigError                 settings missing or invalid
    ├── GraphError                  anything on the way to or from Microsoft Graph
    │   ├── GraphAuthError          no token: bad credentials, unreachable or refusing authority
    │   ├── GraphTransportError     the request never got an answer (connect, TLS, timeout)
    │   └── GraphAPIError           Graph answered with an error status and body
    │       ├── GraphThrottledError 429 / 503 / 504 still failing after the retries
    │       ├── GraphPermissionError 401 / 403: the app lacks a permission or the token was refused
    │       └── GraphNotFoundError  404: the call, participant or resource is gone
    ├── NotificationError           a callback or change-notification body that cannot be understood
    ├── CallbackAuthError           a callback whose bearer token is missing, forged, expired or not for this bot
    └── MediaError                  the media plane (mediabot.media): blobs, WHIP sessions, SDP, recording

Foreign exceptions (httpx, msal, pydantic, PyJWT) are translated at the boundary with ``raise ... from``.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "CallbackAuthError",
    "ConfigError",
    "GraphAPIError",
    "GraphAuthError",
    "GraphError",
    "GraphNotFoundError",
    "GraphPermissionError",
    "GraphThrottledError",
    "GraphTransportError",
    "MediaBotError",
    "MediaError",
    "NotificationError",
]


class MediaBotError(Exception):
    """Root of every error mediabot raises on purpose."""


class ConfigError(MediaBotError):
    """Settings are missing or invalid."""


class GraphError(MediaBotError):
    """Something went wrong talking to Microsoft Graph."""


class GraphAuthError(GraphError):
    """No access token could be acquired (bad credentials, unreachable or refusing authority)."""

    def __init__(self, message: str, *, error: str | None = None, error_codes: list[int] | None = None) -> None:
        super().__init__(message)
        self.error = error
        self.error_codes = error_codes or []


class GraphTransportError(GraphError):
    """The request did not get an HTTP answer (connection, TLS or timeout)."""


class GraphAPIError(GraphError):
    """Graph answered with an error status; carries Graph's error code, message and request id."""

    def __init__(
        self,
        status_code: int,
        code: str,
        message: str,
        *,
        method: str = "",
        url: str = "",
        request_id: str | None = None,
        client_request_id: str | None = None,
        date: str | None = None,
        body: Any = None,
    ) -> None:
        super().__init__(f"{status_code} {code}: {message} ({method} {url}, request-id {request_id})")
        self.status_code = status_code
        self.code = code
        self.message = message
        self.method = method
        self.url = url
        self.request_id = request_id
        self.client_request_id = client_request_id
        self.date = date
        self.body = body


class GraphThrottledError(GraphAPIError):
    """Graph kept answering 429/503/504 after every retry, or asked for a longer wait than the backoff cap allows;
    ``retry_after`` is its last advice in seconds."""

    retry_after: float | None = None


class GraphPermissionError(GraphAPIError):
    """401 or 403: the token was refused or the app lacks the permission this operation needs."""


class GraphNotFoundError(GraphAPIError):
    """404: the resource does not exist (any more)."""


class NotificationError(MediaBotError):
    """A notification body that is not a commsNotifications or change-notification collection."""


class CallbackAuthError(MediaBotError):
    """A callback was refused: its bearer token is missing, malformed, forged, expired or not for this bot."""


class MediaError(MediaBotError):
    """The media plane failed: a bad blob or SDP, an unknown WHIP session, a recording that cannot be written."""
