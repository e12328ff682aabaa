"""``/me/...``: with the app-only tokens the sandbox issues, Graph refuses every ``/me`` request the same way."""

from __future__ import annotations

from fastapi import APIRouter

from .._deps import PrincipalDep
from .._errors import GraphErrorResponse

__all__ = ["router"]

router = APIRouter()


@router.api_route("/me", methods=["GET", "POST", "PATCH", "PUT", "DELETE"])
@router.api_route("/me/{rest:path}", methods=["GET", "POST", "PATCH", "PUT", "DELETE"])
async def me(principal: PrincipalDep) -> None:
    """400: ``/me`` needs a signed-in user, which an app-only token does not have."""
    raise GraphErrorResponse(400, "BadRequest", "/me request is only valid with delegated authentication flow.")
