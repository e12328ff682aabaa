"""The media config blob: the contract's JSON, base64url, strict decoding."""

from __future__ import annotations

import base64
import json

import pytest

from mediabot.media.blob import MediaConfigBlob, MediaConfigError, app_hosted_media_config


def _b64(data: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def test_round_trip_and_contract_shape() -> None:
    blob = MediaConfigBlob(endpoint="https://bot.example/media/whip/s1", token="t0k", receive="mixed")
    encoded = blob.encode()
    assert "=" not in encoded and "+" not in encoded and "/" not in encoded
    raw = json.loads(base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)))
    assert raw == {
        "v": 1,
        "endpoint": "https://bot.example/media/whip/s1",
        "token": "t0k",
        "audio": {"receive": "mixed", "send": True},
    }
    assert MediaConfigBlob.decode(encoded) == blob
    # Padded base64url is accepted too.
    assert MediaConfigBlob.decode(encoded + "=" * (-len(encoded) % 4)) == blob


def test_media_config_wrapping() -> None:
    blob = MediaConfigBlob(endpoint="https://h/media/whip/x", token="k")
    config = app_hosted_media_config(blob)
    assert config["@odata.type"] == "#microsoft.graph.appHostedMediaConfig"
    assert MediaConfigBlob.from_media_config(config) == blob
    assert MediaConfigBlob.from_media_config({"@odata.type": "#microsoft.graph.serviceHostedMediaConfig"}) is None
    assert MediaConfigBlob.from_media_config(None) is None


@pytest.mark.parametrize(
    ("blob", "message"),
    [
        ("", "empty"),
        ("!!!not base64!!!", "base64url"),
        (_b64([1, 2]), "not a JSON object"),
        (_b64({"v": 2, "endpoint": "https://h/x", "token": "t"}), "version"),
        (_b64({"v": 1, "endpoint": "ftp://h/x", "token": "t"}), "endpoint"),
        (_b64({"v": 1, "endpoint": "https://h/x"}), "token"),
        (_b64({"v": 1, "endpoint": "https://h/x", "token": "t", "audio": {"receive": "loud"}}), "receive"),
        (_b64({"v": 1, "endpoint": "https://h/x", "token": "t", "audio": {"send": "yes"}}), "send"),
        ("A" * 9000, "longer"),
    ],
)
def test_bad_blobs_are_refused_with_the_reason(blob: str, message: str) -> None:
    with pytest.raises(MediaConfigError, match=message):
        MediaConfigBlob.decode(blob)
