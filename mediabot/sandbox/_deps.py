"""Request-scoped helpers shared by the Graph routers: the sandbox state, the caller, bodies, permissions, URLs.

Dependencies are ``Annotated`` aliases (``StateDep``, ``PrincipalDep``) so handlers stay declarative.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Annotated, Any

from fastapi import Depends, Request
from starlette.responses import JSONResponse, Response

from ._callback_signing import CallbackSigner
from ._config import AppRegistration, SandboxConfig
from ._errors import GraphErrorResponse
from ._permissions import missing_permission
from ._platform import CallPlatform
from ._schemas import SchemaCatalog
from ._store import SandboxStore
from ._tokens import Principal, TokenError, TokenService

__all__ = [
    "PrincipalDep",
    "SandboxState",
    "StateDep",
    "action_body",
    "api_base",
    "caller_app",
    "json_body",
    "operation_response",
    "require_permission",
    "type_body",
]

_WWW_AUTHENTICATE = (
    'Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/oauth2/authorize", '
    'client_id="00000003-0000-0000-c000-000000000000"'
)


@dataclasses.dataclass
class SandboxState:
    """What every handler can reach: configuration, store, tokens, schemas, callback signer and call platform."""

    config: SandboxConfig
    store: SandboxStore
    tokens: TokenService
    schemas: SchemaCatalog
    signer: CallbackSigner
    platform: CallPlatform


def _state(request: Request) -> SandboxState:
    state: SandboxState = request.app.state.sandbox
    return state


StateDep = Annotated[SandboxState, Depends(_state)]


def _principal(request: Request, state: StateDep) -> Principal:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise GraphErrorResponse(
            401, "InvalidAuthenticationToken", "Access token is empty.", {"WWW-Authenticate": _WWW_AUTHENTICATE}
        )
    try:
        principal = state.tokens.verify(token.strip())
    except TokenError as exc:
        raise GraphErrorResponse(
            401, "InvalidAuthenticationToken", str(exc), {"WWW-Authenticate": _WWW_AUTHENTICATE}
        ) from exc
    request.state.app_id = principal.app_id
    return principal


PrincipalDep = Annotated[Principal, Depends(_principal)]


def caller_app(state: SandboxState, principal: Principal) -> AppRegistration:
    """The registration behind a token (401 if it was removed since)."""
    app = state.store.app(principal.app_id)
    if app is None:
        raise GraphErrorResponse(401, "InvalidAuthenticationToken", "The application of this token is unknown.")
    return app


def require_permission(principal: Principal, operation: str) -> None:
    """403 in Graph's shape unless the token's roles grant ``operation``."""
    needed = missing_permission(operation, principal.roles)
    if needed is not None:
        raise GraphErrorResponse(
            403,
            "Forbidden",
            "Authorization_RequestDenied: Insufficient privileges to complete the operation. "
            f"The application needs one of these application permissions: {', '.join(needed)}.",
        )


async def json_body(request: Request) -> dict[str, Any]:
    """The request's JSON object body (400 like Graph when it is missing or not JSON)."""
    raw = await request.body()
    try:
        body = json.loads(raw) if raw.strip() else None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise GraphErrorResponse(
            400,
            "BadRequest",
            "Unable to read JSON request payload. Please ensure Content-Type header is set and payload is of "
            "valid JSON format.",
        ) from exc
    if not isinstance(body, dict):
        raise GraphErrorResponse(400, "BadRequest", "Empty Payload. JSON content expected.")
    return body


def _reject(errors: list[str], what: str) -> None:
    if errors:
        shown = "; ".join(errors[:5])
        raise GraphErrorResponse(400, "BadRequest", f"Invalid request body for {what}: {shown}")


async def action_body(request: Request, state: SandboxState, action: str) -> dict[str, Any]:
    """The body of a bound action, validated against ``contract/actions/<action>.json``."""
    body = await json_body(request)
    _reject(state.schemas.action_errors(action, body), action)
    return body


async def type_body(request: Request, state: SandboxState, type_name: str) -> dict[str, Any]:
    """An entity body, validated against ``contract/microsoft.graph.<type_name>.json``."""
    body = await json_body(request)
    _reject(state.schemas.type_errors(type_name, body), f"microsoft.graph.{type_name}")
    return body


def api_base(request: Request) -> str:
    """``https://host:port/v1.0`` or ``.../beta``: where this request's version of the API lives."""
    version = request.url.path.split("/")[1]
    return f"{str(request.base_url).rstrip('/')}/{version}"


def operation_response(request: Request, call_id: str, operation: dict[str, Any], status: int = 200) -> Response:
    """A commsOperation answer: body plus ``Location`` of ``operations/{id}``."""
    location = f"{api_base(request)}/communications/calls/{call_id}/operations/{operation['id']}"
    return JSONResponse(operation, status_code=status, headers={"Location": location})
