"""The default media provider."""

from __future__ import annotations

from mediabot.calls import MediaProvider, ServiceHostedMedia


async def test_service_hosted_media() -> None:
    media = ServiceHostedMedia()
    assert isinstance(media, MediaProvider)
    assert await media.media_config(None) == {"@odata.type": "#microsoft.graph.serviceHostedMediaConfig"}
    await media.release("c1")
