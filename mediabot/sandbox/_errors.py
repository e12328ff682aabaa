"""Error bodies in the two shapes the cloud uses: Graph's ``{"error": {...}}`` and Entra's OAuth error JSON.

Route handlers raise :class:`GraphErrorResponse`; the app's exception handler renders it with the request's
``request-id`` and ``client-request-id``.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from starlette.responses import JSONResponse

__all__ = ["GraphErrorResponse", "entra_error", "graph_error_body", "graph_error_code_for_status", "utc_now_iso"]

_CODES = {
    400: "BadRequest",
    401: "InvalidAuthenticationToken",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    429: "TooManyRequests",
    500: "InternalServerError",
    502: "BadGateway",
    503: "ServiceUnavailable",
    504: "GatewayTimeout",
}


def utc_now_iso() -> str:
    """Now, UTC, ISO 8601 with seconds precision and ``Z`` (Graph's ``innerError.date`` form)."""
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def graph_error_code_for_status(status: int) -> str:
    """The error code Graph typically uses with an HTTP status."""
    return _CODES.get(status, "UnknownError")


class GraphErrorResponse(Exception):
    """An error Graph would answer with; raised by handlers, rendered by the app."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def graph_error_body(code: str, message: str, request_id: str, client_request_id: str | None) -> dict[str, Any]:
    """Graph's error JSON."""
    return {
        "error": {
            "code": code,
            "message": message,
            "innerError": {
                "date": utc_now_iso(),
                "request-id": request_id,
                "client-request-id": client_request_id or request_id,
            },
        }
    }


def entra_error(status: int, error: str, code: int, description: str) -> JSONResponse:
    """An Entra token-endpoint error (``error``, ``error_description`` starting ``AADSTS<code>``, ids)."""
    trace_id = str(uuid.uuid4())
    correlation_id = str(uuid.uuid4())
    timestamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    return JSONResponse(
        {
            "error": error,
            "error_description": f"AADSTS{code}: {description} Trace ID: {trace_id} Correlation ID: "
            f"{correlation_id} Timestamp: {timestamp}",
            "error_codes": [code],
            "timestamp": timestamp,
            "trace_id": trace_id,
            "correlation_id": correlation_id,
            "error_uri": f"https://login.microsoftonline.com/error?code={code}",
        },
        status_code=status,
        headers={"Cache-Control": "no-store", "Pragma": "no-cache"},
    )
