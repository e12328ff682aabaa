"""Reading request bodies with a hard size limit, before anything parses them."""

from __future__ import annotations

from fastapi import HTTPException, Request

__all__ = ["read_limited"]


async def read_limited(request: Request, limit: int) -> bytes:
    """The body, or 413 once it passes ``limit`` bytes (declared or streamed)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                raise HTTPException(413, f"body larger than {limit} bytes")
        except ValueError as exc:
            raise HTTPException(400, "invalid Content-Length") from exc
    chunks = bytearray()
    async for chunk in request.stream():
        chunks += chunk
        if len(chunks) > limit:
            raise HTTPException(413, f"body larger than {limit} bytes")
    return bytes(chunks)
