"""The package's public names are pinned: changing them is a deliberate, visible act."""

import mediabot
import mediabot.graph
import mediabot.service


def test_top_level_public_names() -> None:
    assert sorted(mediabot.__all__) == sorted(
        [
            "CallbackAuthError",
            "ConfigError",
            "GraphAPIError",
            "GraphAuthError",
            "GraphError",
            "GraphNotFoundError",
            "GraphPermissionError",
            "GraphThrottledError",
            "GraphTransportError",
            "MediaBotError",
            "MediaError",
            "NotificationError",
            "Settings",
            "__version__",
        ]
    )


def test_every_error_has_one_root() -> None:
    for name in mediabot.__all__:
        value = getattr(mediabot, name)
        if isinstance(value, type) and issubclass(value, Exception):
            assert issubclass(value, mediabot.MediaBotError), name


def test_graph_and_service_public_names() -> None:
    assert sorted(mediabot.graph.__all__) == sorted(
        [
            "CertificateCredential",
            "GraphClient",
            "MeetingJoinInfo",
            "TokenProvider",
            "load_certificate_credential",
            "media_prompt",
            "parse_join_web_url",
            "phone_target",
            "user_target",
        ]
    )
    assert sorted(mediabot.service.__all__) == ["call_config", "create_app"]
