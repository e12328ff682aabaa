"""``MediaConfigBlob``: the open ``appHostedMediaConfig.blob`` (see "The media contract" in ARCHITECTURE.md).

``blob`` = base64url (no padding) of the JSON ``{"v": 1, "endpoint": <https URL of the call's WHIP resource>,
"token": <random bearer>, "audio": {"receive": "unmixed" | "mixed", "send": true}}``. Decoding accepts padded or
unpadded base64url and rejects anything else with :class:`MediaConfigError`, naming what was wrong.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any, Literal

from mediabot._errors import MediaError

__all__ = ["BLOB_VERSION", "MediaConfigBlob", "MediaConfigError", "app_hosted_media_config"]

BLOB_VERSION = 1
MAX_BLOB_CHARS = 8192


class MediaConfigError(MediaError):
    """A media config blob that is not the contract's JSON."""


@dataclass(frozen=True, slots=True)
class MediaConfigBlob:
    """Where and how the calling side publishes a call's audio: the WHIP endpoint, its bearer, the audio mode."""

    endpoint: str
    token: str
    receive: Literal["unmixed", "mixed"] = "unmixed"
    send: bool = True

    @classmethod
    def for_session(
        cls, public_url: str, session_id: str, token: str, receive: Literal["unmixed", "mixed"]
    ) -> MediaConfigBlob:
        """The blob of a session served at ``<public_url>/media/whip/<session_id>``, publishing in both directions."""
        return cls(
            endpoint=f"{public_url.rstrip('/')}/media/whip/{session_id}", token=token, receive=receive, send=True
        )

    def to_json(self) -> dict[str, Any]:
        """The contract's JSON object."""
        return {
            "v": BLOB_VERSION,
            "endpoint": self.endpoint,
            "token": self.token,
            "audio": {"receive": self.receive, "send": self.send},
        }

    def encode(self) -> str:
        """base64url (unpadded) of the compact JSON."""
        raw = json.dumps(self.to_json(), separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")

    @classmethod
    def decode(cls, blob: str) -> MediaConfigBlob:
        """Parse a blob; :class:`MediaConfigError` says what is wrong with a bad one."""
        if not isinstance(blob, str) or not blob:
            raise MediaConfigError("the media config blob is empty")
        if len(blob) > MAX_BLOB_CHARS:
            raise MediaConfigError(f"the media config blob is longer than {MAX_BLOB_CHARS} characters")
        try:
            raw = base64.urlsafe_b64decode(blob + "=" * (-len(blob) % 4))
            data = json.loads(raw)
        except (binascii.Error, ValueError) as exc:
            raise MediaConfigError("the media config blob is not base64url-encoded JSON") from exc
        if not isinstance(data, dict):
            raise MediaConfigError("the media config blob is not a JSON object")
        if data.get("v") != BLOB_VERSION:
            raise MediaConfigError(f"unsupported media config blob version {data.get('v')!r} (expected 1)")
        endpoint, token, audio = data.get("endpoint"), data.get("token"), data.get("audio", {})
        if not isinstance(endpoint, str) or not endpoint.startswith(("https://", "http://")):
            raise MediaConfigError("the media config blob has no http(s) 'endpoint'")
        if not isinstance(token, str) or not token:
            raise MediaConfigError("the media config blob has no 'token'")
        if not isinstance(audio, dict):
            raise MediaConfigError("the media config blob's 'audio' is not an object")
        receive = audio.get("receive", "unmixed")
        if receive not in ("unmixed", "mixed"):
            raise MediaConfigError(f"the media config blob's audio.receive is {receive!r}, not unmixed or mixed")
        send = audio.get("send", True)
        if not isinstance(send, bool):
            raise MediaConfigError("the media config blob's audio.send is not a boolean")
        return cls(endpoint=endpoint, token=token, receive=receive, send=send)

    @classmethod
    def from_media_config(cls, media_config: dict[str, Any] | None) -> MediaConfigBlob | None:
        """The blob of an ``appHostedMediaConfig`` (``None`` for service-hosted or absent media)."""
        if not media_config or "appHostedMediaConfig" not in str(media_config.get("@odata.type", "")):
            return None
        return cls.decode(str(media_config.get("blob") or ""))


def app_hosted_media_config(blob: MediaConfigBlob) -> dict[str, Any]:
    """The ``mediaConfig`` body Graph takes for app-hosted media."""
    return {"@odata.type": "#microsoft.graph.appHostedMediaConfig", "blob": blob.encode()}
