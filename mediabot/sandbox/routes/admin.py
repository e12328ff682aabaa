"""``/_sandbox/...``: the emulator's own control plane (not part of Graph; no token needed, loopback only).

- ``POST /_sandbox/apps``: register an app (roles, optional secret or certificate PEM); ``GET`` lists them.
- ``POST /_sandbox/faults`` / ``GET`` / ``DELETE``: arm, list, clear injected faults (``phase`` ``before`` the
  request is handled, or ``after``: applied, then the response withheld ``delay`` seconds and/or replaced by
  ``status``).
- ``GET`` / ``DELETE /_sandbox/requests``: the request log (method, path, client-request-id, status, whether the
  attempt was handled or replayed, which fault phase struck it).
- ``POST /_sandbox/reset``: between tests: disarm faults, end every live call and stop every pending notification
  delivery (logged ``cancelled``), so nothing a finished test started keeps running.
- ``POST /_sandbox/calls/incoming`` (also ``/sandbox/calls/incoming``): ring an app with an incoming call;
  ``POST /_sandbox/calls/{id}/end``: the remote side hangs up; ``POST /_sandbox/calls/{id}/tones``: it presses tones.
- ``POST /_sandbox/apps/{client_id}/callback``: the default callbackUri of the app's incoming calls.
- ``GET`` / ``DELETE /_sandbox/notifications``: the log of commsNotification deliveries to callbackUris;
  ``DELETE /_sandbox/notifications/pending``: stop every delivery still queued or being retried.
- ``POST /_sandbox/scenarios``: start a scenario file (see :mod:`mediabot.sandbox._director`); ``GET`` lists runs,
  ``GET /_sandbox/scenarios/{id}`` shows one (status, call id, the meeting to join, the relay's counters).
- ``GET /_sandbox/health``: readiness.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any, Literal

from cryptography import x509
from fastapi import APIRouter, Request
from pydantic import BaseModel, Field
from starlette.responses import JSONResponse, Response

from mediabot._errors import MediaBotError

from .._config import AppRegistration, new_client_secret
from .._deps import StateDep
from .._director import ScenarioDirector
from .._errors import GraphErrorResponse
from .._notifications import REMOTE_HUNG_UP_RESULT
from .._store import Fault

__all__ = ["issue_router", "router"]

router = APIRouter(prefix="/_sandbox")
#: The incoming-call route under the path the issue names, without the underscore.
issue_router = APIRouter(prefix="/sandbox")


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
    #: ``before``: refused (``status``) or slowed (``delay``) before handling; ``after``: handled, then the client
    #: gets ``status`` and/or its response only after ``delay`` seconds
    phase: Literal["before", "after"] = "before"


class IncomingCallRequest(BaseModel):
    """Body of ``POST /_sandbox/calls/incoming``."""

    client_id: str | None = None
    #: where the platform POSTs the call's notifications; default: the app's registered callback
    callback_uri: str | None = None
    caller_id: str = Field(default_factory=lambda: str(uuid.uuid4()))
    caller_display_name: str = "Sandbox Caller"
    caller_kind: Literal["user", "phone"] = "user"


class ScenarioRequest(BaseModel):
    """Body of ``POST /_sandbox/scenarios``."""

    #: the scenario file (YAML or JSON) on the sandbox's machine
    path: str
    client_id: str | None = None
    #: incoming scenarios: where the platform POSTs the call's notifications; default: the app's registered callback
    callback_uri: str | None = None
    #: seeds the scripted loss and jitter
    seed: int = 0


class CallbackRequest(BaseModel):
    """Body of ``POST /_sandbox/apps/{client_id}/callback``."""

    callback_uri: str


class TonesRequest(BaseModel):
    """Body of ``POST /_sandbox/calls/{id}/tones``."""

    tones: list[str] = Field(min_length=1)


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
        phase=body.phase,
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
        "phase": fault.phase,
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


@router.post("/reset")
async def reset(state: StateDep) -> dict[str, int]:
    """Disarm faults, end every live call and stop pending notification deliveries; how many of each.

    The calls end as if the remote side hung up (callRecords are filed), but the notifications that would tell
    their bots are cancelled with everything else still pending: nothing outlives the test that started it.
    Apps, meetings, presence, subscriptions and the logs stay.
    """
    faults = len(state.store.faults())
    state.store.clear_faults()
    ended = state.store.end_all_calls()
    for call, owner in ended:
        state.platform.ended(call, owner, REMOTE_HUNG_UP_RESULT)
    cancelled = await state.platform.notifier.cancel_pending()
    return {"faults_cleared": faults, "calls_ended": len(ended), "deliveries_cancelled": cancelled}


@router.post("/apps/{client_id}/callback")
async def set_callback(client_id: str, body: CallbackRequest, state: StateDep) -> dict[str, str]:
    """Set the callbackUri of the app's incoming calls when the ringing request names none."""
    if state.store.app(client_id) is None:
        raise GraphErrorResponse(404, "NotFound", f"App '{client_id}' not found.")
    state.store.set_default_callback(client_id, body.callback_uri)
    return {"client_id": client_id, "callback_uri": body.callback_uri}


@router.post("/calls/incoming", status_code=201)
@issue_router.post("/calls/incoming", status_code=201)
async def incoming_call(body: IncomingCallRequest, request: Request, state: StateDep) -> dict[str, Any]:
    """Ring an app (default: the default app) with a call in state ``incoming``; the call (notified ``created``)."""
    app = state.store.app(body.client_id) if body.client_id else state.config.default_app
    if app is None:
        raise GraphErrorResponse(404, "NotFound", f"App '{body.client_id}' not found.")
    callback_uri = body.callback_uri if body.callback_uri is not None else state.store.default_callback(app.client_id)
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
    call = state.store.incoming_call(app, caller, callback_uri, context)
    state.platform.incoming(call, app.client_id)
    return call


@router.post("/calls/{call_id}/end")
async def end_call(call_id: str, state: StateDep) -> JSONResponse:
    """End a call as if the remote side hung up (notified ``deleted``); the id of the filed callRecord."""
    call, owner = state.store.call_snapshot(call_id)
    record_id = state.store.end_call(call_id)
    state.platform.ended(call, owner, REMOTE_HUNG_UP_RESULT)
    return JSONResponse({"id": call_id, "state": "terminated", "callRecordId": record_id})


@router.post("/calls/{call_id}/tones")
async def press_tones(call_id: str, body: TonesRequest, state: StateDep) -> dict[str, Any]:
    """The remote side presses DTMF tones; notified (one call ``updated`` per tone) if the call subscribed."""
    call, owner, received = state.store.receive_tones(call_id, body.tones)
    if received:
        state.platform.tones(call, owner, received)
    return {"id": call_id, "notified": [{"sequenceId": seq, "tone": tone} for seq, tone in received]}


@router.get("/notifications")
async def list_notifications(state: StateDep) -> dict[str, Any]:
    """The notification delivery log, oldest first."""
    return {"value": state.platform.notifier.deliveries()}


@router.delete("/notifications", status_code=204)
async def clear_notifications(state: StateDep) -> Response:
    """Empty the notification delivery log."""
    state.platform.notifier.clear()
    return Response(status_code=204)


@router.delete("/notifications/pending")
async def cancel_notifications(state: StateDep) -> dict[str, int]:
    """Stop every delivery still queued or being retried (logged ``cancelled``); how many."""
    return {"cancelled": await state.platform.notifier.cancel_pending()}


def _director(state: Any) -> ScenarioDirector:
    director: ScenarioDirector | None = state.platform.director
    if director is None:
        raise GraphErrorResponse(503, "ServiceUnavailable", "This sandbox runs no scenarios.")
    return director


@router.post("/scenarios", status_code=201)
async def start_scenario(body: ScenarioRequest, request: Request, state: StateDep) -> dict[str, Any]:
    """Start a scenario: an incoming one rings the app now; a meeting or outgoing one waits for the bot's call."""
    app = state.store.app(body.client_id) if body.client_id else state.config.default_app
    if app is None:
        raise GraphErrorResponse(404, "NotFound", f"App '{body.client_id}' not found.")
    director = _director(state)
    try:
        run = await director.create(Path(body.path), app.client_id, seed=body.seed)
    except (MediaBotError, OSError) as exc:
        raise GraphErrorResponse(400, "BadRequest", f"The scenario cannot be used: {exc}") from exc
    if run.scenario.kind == "incoming":
        caller = next(iter(run.members.values()))
        callback_uri = body.callback_uri or state.store.default_callback(app.client_id)
        context = f"{str(request.base_url).rstrip('/')}/v1.0/$metadata#communications/calls/$entity"
        call = state.store.incoming_call(app, caller.identity(state.config.tenant_id), callback_uri, context)
        director.attach(run, call["id"])
        state.platform.incoming(call, app.client_id)
    return run.to_json()


@router.get("/scenarios")
async def list_scenarios(state: StateDep) -> dict[str, Any]:
    """Every scenario run."""
    return {"value": [run.to_json() for run in _director(state).runs()]}


@router.get("/scenarios/{run_id}")
async def get_scenario(run_id: str, state: StateDep) -> dict[str, Any]:
    """One scenario run."""
    run = _director(state).run(run_id)
    if run is None:
        raise GraphErrorResponse(404, "NotFound", f"Scenario run '{run_id}' not found.")
    return run.to_json()
