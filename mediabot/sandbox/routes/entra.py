"""Emulated Entra ID: OpenID discovery, JWKS and the v2.0 token endpoint (client credentials only).

Client authentication by ``client_secret`` (form or HTTP Basic) or by a certificate-signed ``client_assertion``.
Errors carry Entra's JSON shape and AADSTS codes.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
from typing import Any
from urllib.parse import parse_qs, unquote

from fastapi import APIRouter, Request
from starlette.responses import JSONResponse, Response

from .._deps import StateDep
from .._errors import entra_error
from .._tokens import ACCESS_TOKEN_LIFETIME, GRAPH_APP_ID, GRAPH_RESOURCE, ClientAssertionError, verify_client_assertion

__all__ = ["router"]

logger = logging.getLogger(__name__)
router = APIRouter()

_JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
_RESERVED_SCOPES = {"openid", "profile", "offline_access"}
_GRAPH_RESOURCES = {GRAPH_RESOURCE, f"{GRAPH_RESOURCE}/", GRAPH_APP_ID}


def _authority(request: Request, tenant: str) -> str:
    return f"{str(request.base_url).rstrip('/')}/{tenant}"


def _unknown_tenant(tenant: str) -> Response:
    return entra_error(
        400,
        "invalid_request",
        90002,
        f"Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the "
        "correct cloud.",
    )


@router.get("/{tenant}/v2.0/.well-known/openid-configuration")
async def openid_configuration(tenant: str, request: Request, state: StateDep) -> Response:
    """OpenID Connect discovery document of the tenant."""
    if tenant != state.config.tenant_id:
        return _unknown_tenant(tenant)
    authority = _authority(request, tenant)
    return JSONResponse(
        {
            "issuer": f"{authority}/v2.0",
            "authorization_endpoint": f"{authority}/oauth2/v2.0/authorize",
            "token_endpoint": f"{authority}/oauth2/v2.0/token",
            "jwks_uri": f"{authority}/discovery/v2.0/keys",
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "grant_types_supported": ["client_credentials"],
            "tenant_region_scope": "EU",
            "cloud_instance_name": "microsoftonline.com",
        }
    )


@router.get("/{tenant}/discovery/v2.0/keys")
async def keys(tenant: str, state: StateDep) -> Response:
    """The token-signing keys (JWKS)."""
    if tenant != state.config.tenant_id:
        return _unknown_tenant(tenant)
    return JSONResponse(state.tokens.jwks())


def _basic_credentials(request: Request) -> tuple[str | None, str | None]:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None, None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None, None
    client_id, _, secret = decoded.partition(":")
    return unquote(client_id), unquote(secret)


def _scope_error(scope: str) -> Response | None:
    scopes = [s for s in scope.split() if s not in _RESERVED_SCOPES]
    if len(scopes) != 1 or not scopes[0].endswith("/.default"):
        return entra_error(
            400,
            "invalid_scope",
            1002012,
            f"The provided value for scope {scope} is not valid. Client credential flows must have a scope value "
            "with /.default suffixed to the resource identifier (application ID URI).",
        )
    resource = scopes[0].removesuffix(".default")
    if resource not in _GRAPH_RESOURCES and resource.rstrip("/") not in _GRAPH_RESOURCES:
        return entra_error(
            400,
            "invalid_resource",
            500011,
            f"The resource principal named {resource.rstrip('/')} was not found in the tenant. This can happen if "
            "the application has not been installed by the administrator of the tenant.",
        )
    return None


@router.post("/{tenant}/oauth2/v2.0/token")
async def token(tenant: str, request: Request, state: StateDep) -> Response:
    """Client-credentials grant: an access token for Microsoft Graph with the app's roles."""
    if tenant != state.config.tenant_id:
        return _unknown_tenant(tenant)
    form: dict[str, Any] = {
        key: values[0] for key, values in parse_qs((await request.body()).decode("utf-8", "replace")).items()
    }
    basic_id, basic_secret = _basic_credentials(request)
    grant_type = form.get("grant_type")
    if grant_type != "client_credentials":
        return entra_error(
            400,
            "unsupported_grant_type",
            70003,
            f"The app requested an unsupported grant type '{grant_type}'. The sandbox supports client_credentials.",
        )
    client_id = form.get("client_id") or basic_id
    if not client_id:
        return entra_error(
            400, "invalid_request", 900144, "The request body must contain the following parameter: 'client_id'."
        )
    app = state.store.app(client_id)
    if app is None:
        return entra_error(
            400,
            "unauthorized_client",
            700016,
            f"Application with identifier '{client_id}' was not found in the directory '{tenant}'. This can happen "
            "if the application has not been installed by the administrator of the tenant or consented to by any "
            "user in the tenant. You may have sent your authentication request to the wrong tenant.",
        )
    if (error := _scope_error(str(form.get("scope", "")))) is not None:
        return error
    secret = form.get("client_secret") or basic_secret
    assertion = form.get("client_assertion")
    if assertion is not None:
        if form.get("client_assertion_type") != _JWT_BEARER:
            return entra_error(
                400,
                "invalid_request",
                50027,
                f"client_assertion_type must be '{_JWT_BEARER}'.",
            )
        token_endpoint = f"{_authority(request, tenant)}/oauth2/v2.0/token"
        try:
            verify_client_assertion(str(assertion), app, token_endpoint)
        except ClientAssertionError as exc:
            logger.info("client assertion refused for %s: %s", client_id, exc)
            return entra_error(401, "invalid_client", 700027, f"Client assertion failed signature validation. {exc}")
        certificate_auth = True
    elif secret is not None:
        if app.client_secret is None or not hmac.compare_digest(str(secret).encode(), app.client_secret.encode()):
            return entra_error(
                401,
                "invalid_client",
                7000215,
                "Invalid client secret provided. Ensure the secret being sent in the request is the client secret "
                f"value, not the client secret ID, for a secret added to app '{client_id}'.",
            )
        certificate_auth = False
    else:
        return entra_error(
            401,
            "invalid_client",
            7000218,
            "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
        )
    access_token = state.tokens.issue(app, certificate_auth=certificate_auth)
    logger.info("issued a token to %s (roles: %d)", client_id, len(app.roles))
    return JSONResponse(
        {
            "token_type": "Bearer",
            "expires_in": ACCESS_TOKEN_LIFETIME,
            "ext_expires_in": ACCESS_TOKEN_LIFETIME,
            "access_token": access_token,
        },
        headers={"Cache-Control": "no-store", "Pragma": "no-cache"},
    )
