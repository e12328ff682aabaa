"""The Graph plane: app-only tokens, the Graph communications client, models and notification parsing."""

from mediabot.graph.auth import CertificateCredential, TokenProvider, load_certificate_credential
from mediabot.graph.client import GraphClient, media_prompt, phone_target, user_target
from mediabot.graph.join_url import MeetingJoinInfo, parse_join_web_url

__all__ = [
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
