"""``/callback/...``: the OpenID configuration and JWKS of the key that signs call notifications."""

from __future__ import annotations

from typing import Any, Final

from fastapi import APIRouter, Request

from .._deps import StateDep

__all__ = ["CALLBACK_OPENID_PATH", "router"]

CALLBACK_OPENID_PATH: Final = "/callback/.well-known/OpenIdConfiguration"

router = APIRouter()


@router.get(CALLBACK_OPENID_PATH)
async def openid_configuration(request: Request, state: StateDep) -> dict[str, Any]:
    """Issuer and ``jwks_uri`` of call-notification tokens."""
    return state.signer.openid_configuration(str(request.base_url).rstrip("/"))


@router.get("/callback/keys")
async def keys(state: StateDep) -> dict[str, Any]:
    """The JWKS of the call-notification signing key."""
    return state.signer.jwks()
