"""``/_sandbox/...``: the emulator's own control plane (not part of Graph; no token needed, loopback only).

- ``POST /_sandbox/apps``: register an app (roles, optional secret or certificate PEM); ``GET`` lists them.
- ``POST /_sandbox/faults`` / ``GET`` / ``DELETE``: arm, list, clear injected faults.
- ``GET`` / ``DELETE /_sandbox/requests``: the request log (method, path, client-request-id, status).
- ``POST /_sandbox/calls/incoming``: ring an app with an incoming call; ``POST /_sandbox/calls/{id}/end``: hang up.
- ``GET /_sandbox/health``: readiness.
"""

from __future__ import annotations

import uuid
from typing import Any, Literal

from cryptography import x509
from fastapi import APIRouter, Request
from pydantic import BaseModel, Field
from starlette.responses import JSONResponse, Response

from .._config import AppRegistration, new_client_secret
from .._deps import StateDep
from .._errors import GraphErrorResponse
from .._store import Fault

__all__ = ["router"]

router = APIRouter(prefix="/_sandbox")


class AppRequest(BaseModel):
    """Body of ``POST /_sandbox/apps``."""

    roles: list[str] = Field(default_factory=list)
    client_id: str | None = None
    client_secret: str | None = None
    certificate_pem: str | None = None
    display_name: str = "mediabot sandbox app"


class FaultRequest(BaseModel):
    """Body of ``POST /_sandbox/faults`` (see :class:`mediabot.sandbox._store.Fault`)."""

    method: str = "*"
    path: str
    status: int | None = Field(default=None, ge=400, le=599)
    count: int = Field(default=1, ge=1)
    retry_after: int | None = Field(default=None, ge=0)
    delay: float = Field(default=0.0, ge=0.0, le=120.0)
    match: Literal["prefix", "exact", "glob"] = "prefix"


class IncomingCallRequest(BaseModel):
    """Body of ``POST /_sandbox/calls/incoming``."""

    client_id: str | None = None
    callback_uri: str = ""
    caller_id: str = Field(default_factory=lambda: str(uuid.uuid4()))
    caller_display_name: str = "Sandbox Caller"
    caller_kind: Literal["user", "phone"] = "user"


@router.get("/health")
async def health(state: StateDep) -> dict[str, str]:
    """Readiness probe."""
    return {"status": "ok", "tenant_id": state.config.tenant_id}


@router.post("/apps", status_code=201)
async def register_app(body: AppRequest, state: StateDep) -> dict[str, Any]:
    """Register an app; a secret is generated when neither a secret nor a certificate is given."""
    if body.certificate_pem is not None:
        try:
            x509.load_pem_x509_certificate(body.certificate_pem.encode("ascii"))
        except ValueError as exc:
            raise GraphErrorResponse(400, "BadRequest", "certificate_pem is not a PEM certificate.") from exc
    secret = body.client_secret
    if secret is None and body.certificate_pem is None:
        secret = new_client_secret()
    app = AppRegistration(
        client_id=body.client_id or str(uuid.uuid4()),
        client_secret=secret,
        roles=tuple(body.roles),
        certificate_pem=body.certificate_pem,
        display_name=body.display_name,
    )
    if state.store.app(app.client_id) is not None:
        raise GraphErrorResponse(409, "Conflict", f"App '{app.client_id}' already exists.")
    state.store.add_app(app)
    return app.to_json()


@router.get("/apps")
async def list_apps(state: StateDep) -> dict[str, Any]:
    """The registrations, without secrets."""
    return {"value": [app.to_json(include_secret=False) for app in state.store.apps()]}


@router.post("/faults", status_code=201)
async def inject_fault(body: FaultRequest, state: StateDep) -> dict[str, Any]:
    """Make the next ``count`` matching requests fail with ``status`` (and/or wait ``delay`` seconds)."""
    fault = Fault(
        method=body.method.upper(),
        path=body.path,
        status=body.status,
        count=body.count,
        retry_after=body.retry_after,
        delay=body.delay,
        match=body.match,
    )
    state.store.add_fault(fault)
    return _fault_json(fault)


@router.get("/faults")
async def list_faults(state: StateDep) -> dict[str, Any]:
    """The armed faults."""
    return {"value": [_fault_json(fault) for fault in state.store.faults()]}


@router.delete("/faults", status_code=204)
async def clear_faults(state: StateDep) -> Response:
    """Disarm every fault."""
    state.store.clear_faults()
    return Response(status_code=204)


def _fault_json(fault: Fault) -> dict[str, Any]:
    return {
        "id": fault.id,
        "method": fault.method,
        "path": fault.path,
        "status": fault.status,
        "count": fault.count,
        "retry_after": fault.retry_after,
        "delay": fault.delay,
        "match": fault.match,
    }


@router.get("/requests")
async def list_requests(state: StateDep) -> dict[str, Any]:
    """The request log, oldest first."""
    return {"value": state.store.requests()}


@router.delete("/requests", status_code=204)
async def clear_requests(state: StateDep) -> Response:
    """Empty the request log."""
    state.store.clear_requests()
    return Response(status_code=204)


@router.post("/calls/incoming", status_code=201)
async def incoming_call(body: IncomingCallRequest, request: Request, state: StateDep) -> dict[str, Any]:
    """Ring an app (default: the default app) with a call in state ``incoming``; the call."""
    app = state.store.app(body.client_id) if body.client_id else state.config.default_app
    if app is None:
        raise GraphErrorResponse(404, "NotFound", f"App '{body.client_id}' not found.")
    if body.caller_kind == "phone":
        caller = {
            "@odata.type": "#microsoft.graph.identitySet",
            "phone": {"@odata.type": "#microsoft.graph.identity", "id": body.caller_id},
        }
    else:
        caller = {
            "@odata.type": "#microsoft.graph.identitySet",
            "user": {
                "@odata.type": "#microsoft.graph.identity",
                "id": body.caller_id,
                "displayName": body.caller_display_name,
                "tenantId": state.config.tenant_id,
            },
        }
    context = f"{str(request.base_url).rstrip('/')}/v1.0/$metadata#communications/calls/$entity"
    return state.store.incoming_call(app, caller, body.callback_uri, context)


@router.post("/calls/{call_id}/end")
async def end_call(call_id: str, state: StateDep) -> JSONResponse:
    """End a call as if the remote side hung up; the id of the filed callRecord."""
    record_id = state.store.end_call(call_id)
    return JSONResponse({"id": call_id, "state": "terminated", "callRecordId": record_id})
