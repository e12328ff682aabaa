"""mediabot: an open bot worker for Microsoft Graph cloud communications."""

from mediabot._errors import (
    CallbackAuthError,
    ConfigError,
    GraphAPIError,
    GraphAuthError,
    GraphError,
    GraphNotFoundError,
    GraphPermissionError,
    GraphThrottledError,
    GraphTransportError,
    MediaBotError,
    MediaError,
    NotificationError,
)
from mediabot.config import Settings

__version__ = "0.1.0"

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
    "Settings",
    "__version__",
]
