"""``/subscriptions``: change-notification subscriptions (callRecords, presence) with Graph's validation handshake.

On create Graph POSTs ``notificationUrl?validationToken=<token>`` (and the same to ``lifecycleNotificationUrl``) and
needs ``200`` with the token echoed as ``text/plain`` within 10 seconds; the sandbox does the same, trusting its own
certificate plus ``SandboxConfig.notification_ca_path``. ``http://`` URLs are refused (Graph requires HTTPS) unless
``SandboxConfig.allow_http_notification_urls`` is set.
"""

from __future__ import annotations

import datetime as dt
import logging
import ssl
import uuid
from typing import Any
from urllib.parse import urlsplit

import httpx
from fastapi import APIRouter, Request
from starlette.responses import JSONResponse, Response

from .._deps import PrincipalDep, SandboxState, StateDep, api_base, type_body
from .._errors import GraphErrorResponse
from .._permissions import SUBSCRIPTION_RESOURCE_PERMISSIONS
from .._tokens import Principal

__all__ = ["router"]

logger = logging.getLogger(__name__)
router = APIRouter()

#: resource prefix → (allowed change types, maximum lifetime), from Graph's subscription resource table.
_RESOURCES: dict[str, tuple[frozenset[str], dt.timedelta]] = {
    "communications/callRecords": (frozenset({"created", "updated"}), dt.timedelta(minutes=4230)),
    "communications/presences": (frozenset({"updated"}), dt.timedelta(minutes=60)),
}


def _invalid(message: str) -> GraphErrorResponse:
    return GraphErrorResponse(400, "InvalidRequest", message)


def _resource_kind(resource: str) -> str:
    normalized = resource.lstrip("/")
    for prefix in _RESOURCES:
        rest = normalized.removeprefix(prefix)
        if rest != normalized and (rest == "" or rest[0] in "/?"):
            if prefix == "communications/presences" and rest in ("", "/"):
                break
            return prefix
    raise _invalid(
        f"Resource '{resource}' is not supported; the sandbox knows communications/callRecords and "
        "communications/presences/{id} or communications/presences?$filter=id in (...)."
    )


def _expiration(value: Any, kind: str) -> dt.datetime:
    try:
        moment = dt.datetime.fromisoformat(str(value))
    except ValueError as exc:
        raise _invalid(f"expirationDateTime '{value}' is not a valid date-time.") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    now = dt.datetime.now(dt.UTC)
    limit = _RESOURCES[kind][1]
    if moment <= now:
        raise _invalid("Subscription expiration must be in the future.")
    if moment > now + limit:
        raise _invalid(f"Subscription expiration can only be {int(limit.total_seconds() // 60)} minutes in the future.")
    return moment


def _check_permission(principal: Principal, kind: str) -> None:
    needed = SUBSCRIPTION_RESOURCE_PERMISSIONS[kind]
    if not any(role in principal.roles for role in needed):
        raise GraphErrorResponse(
            403,
            "Forbidden",
            "Authorization_RequestDenied: Insufficient privileges to subscribe to this resource. "
            f"The application needs one of these application permissions: {', '.join(needed)}.",
        )


def _ssl_context(state: SandboxState) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(state.config.cert_path))
    if state.config.notification_ca_path is not None:
        context.load_verify_locations(cafile=str(state.config.notification_ca_path))
    return context


def _check_url(state: SandboxState, url: Any, field: str) -> str:
    parts = urlsplit(str(url or ""))
    allowed = {"https", "http"} if state.config.allow_http_notification_urls else {"https"}
    if parts.scheme not in allowed or not parts.netloc:
        raise _invalid(f"{field} must be an https URL (got '{url}').")
    return str(url)


async def _validate_endpoint(state: SandboxState, url: str) -> None:
    """Graph's validation handshake: the endpoint must echo ``validationToken`` with 200 in time."""
    token = f"Validation: Testing client application reachability for subscription Request-Id: {uuid.uuid4()}"
    try:
        async with httpx.AsyncClient(
            verify=_ssl_context(state), trust_env=False, timeout=state.config.validation_timeout
        ) as client:
            response = await client.post(
                url, params={"validationToken": token}, headers={"Content-Type": "text/plain; charset=utf-8"}
            )
    except httpx.HTTPError as exc:
        logger.info("subscription validation of %s failed: %s", url, type(exc).__name__)
        raise _invalid(
            f"Subscription validation request failed. Notification endpoint must respond with 200 OK "
            f"to validation request. ({type(exc).__name__})"
        ) from exc
    if response.status_code != 200:
        raise _invalid(
            f"Subscription validation request failed. Notification endpoint must respond with 200 OK "
            f"to validation request; it answered {response.status_code}."
        )
    if response.text != token:
        raise _invalid(
            "Subscription validation request failed. Response must exactly match validationToken query parameter."
        )


@router.post("/subscriptions")
async def create_subscription(request: Request, state: StateDep, principal: PrincipalDep) -> Response:
    """Create a subscription after the validation handshake (201)."""
    body = await type_body(request, state, "subscription")
    for field in ("changeType", "notificationUrl", "resource", "expirationDateTime"):
        if not body.get(field):
            raise GraphErrorResponse(400, "BadRequest", f"{field} is required.")
    kind = _resource_kind(str(body["resource"]))
    _check_permission(principal, kind)
    change_types = {part.strip() for part in str(body["changeType"]).split(",")}
    if not change_types <= _RESOURCES[kind][0]:
        allowed = ", ".join(sorted(_RESOURCES[kind][0]))
        raise _invalid(f"changeType '{body['changeType']}' is not supported for {kind}; allowed: {allowed}.")
    _expiration(body["expirationDateTime"], kind)
    if body.get("includeResourceData") and not (
        body.get("encryptionCertificate") and body.get("encryptionCertificateId")
    ):
        raise _invalid("includeResourceData requires encryptionCertificate and encryptionCertificateId.")
    urls = [_check_url(state, body["notificationUrl"], "notificationUrl")]
    if body.get("lifecycleNotificationUrl"):
        urls.append(_check_url(state, body["lifecycleNotificationUrl"], "lifecycleNotificationUrl"))
    for url in dict.fromkeys(urls):
        await _validate_endpoint(state, url)
    subscription = {
        "@odata.context": f"{api_base(request)}/$metadata#subscriptions/$entity",
        "id": str(uuid.uuid4()),
        "resource": body["resource"],
        "applicationId": principal.app_id,
        "changeType": body["changeType"],
        "clientState": body.get("clientState"),
        "notificationUrl": body["notificationUrl"],
        "lifecycleNotificationUrl": body.get("lifecycleNotificationUrl"),
        "expirationDateTime": body["expirationDateTime"],
        "creatorId": principal.object_id,
        "includeResourceData": bool(body.get("includeResourceData", False)),
        "encryptionCertificate": body.get("encryptionCertificate"),
        "encryptionCertificateId": body.get("encryptionCertificateId"),
        "latestSupportedTlsVersion": body.get("latestSupportedTlsVersion", "v1_2"),
        "notificationUrlAppId": None,
    }
    state.store.add_subscription(subscription, principal.app_id)
    return JSONResponse(subscription, status_code=201)


@router.get("/subscriptions")
async def list_subscriptions(request: Request, state: StateDep, principal: PrincipalDep) -> dict[str, Any]:
    """The caller's subscriptions."""
    return {
        "@odata.context": f"{api_base(request)}/$metadata#subscriptions",
        "value": state.store.subscriptions(principal.app_id),
    }


@router.get("/subscriptions/{subscription_id}")
async def get_subscription(subscription_id: str, state: StateDep, principal: PrincipalDep) -> dict[str, Any]:
    """One subscription."""
    return state.store.subscription(subscription_id, principal.app_id)


@router.patch("/subscriptions/{subscription_id}")
async def renew_subscription(
    subscription_id: str, request: Request, state: StateDep, principal: PrincipalDep
) -> dict[str, Any]:
    """Renew: a new ``expirationDateTime`` within the resource's maximum (200)."""
    current = state.store.subscription(subscription_id, principal.app_id)
    body = await type_body(request, state, "subscription")
    unsupported = set(body) - {"expirationDateTime", "@odata.type"}
    if unsupported or "expirationDateTime" not in body:
        raise _invalid("Only expirationDateTime can be updated.")
    _expiration(body["expirationDateTime"], _resource_kind(str(current["resource"])))
    return state.store.update_subscription(
        subscription_id, principal.app_id, {"expirationDateTime": body["expirationDateTime"]}
    )


@router.delete("/subscriptions/{subscription_id}", status_code=204)
async def delete_subscription(subscription_id: str, state: StateDep, principal: PrincipalDep) -> Response:
    """Delete a subscription (204)."""
    state.store.delete_subscription(subscription_id, principal.app_id)
    return Response(status_code=204)
