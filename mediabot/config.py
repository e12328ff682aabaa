"""Settings: one pydantic-settings class, read once (environment ``MEDIABOT_*`` or ``.env``) and passed in."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Literal, Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from mediabot._loop import EventLoop
from mediabot.logs import LogFormat, LogLevel

__all__ = ["Settings"]

PUBLIC_AUTHORITY_HOST = "https://login.microsoftonline.com"
PUBLIC_GRAPH_URL = "https://graph.microsoft.com/v1.0"
GRAPH_SCOPE = "https://graph.microsoft.com/.default"


class Settings(BaseSettings):
    """Everything mediabot is configured with; see the README's configuration reference."""

    model_config = SettingsConfigDict(
        env_prefix="MEDIABOT_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    tenant_id: str = Field(default="", description="Entra tenant (directory) id of the bot's app registration.")
    client_id: str = Field(default="", description="Application (client) id of the bot's app registration.")
    client_secret: SecretStr | None = Field(default=None, description="Client secret (or use a certificate).")
    certificate_path: Path | None = Field(
        default=None,
        description="PEM file with the app's certificate and its private key (instead of a secret).",
    )
    certificate_thumbprint: str | None = Field(
        default=None,
        description="SHA-1 thumbprint (hex) of the certificate; computed from the PEM when unset.",
    )
    authority: str | None = Field(
        default=None, description="Token authority; default https://login.microsoftonline.com/<tenant_id>."
    )
    graph_url: str = Field(default=PUBLIC_GRAPH_URL, description="Graph base URL (v1.0, or .../beta).")
    graph_scope: str = Field(default=GRAPH_SCOPE, description="OAuth scope requested for Graph tokens.")
    ca_bundle: Path | None = Field(
        default=None, description="CA bundle trusted for the authority and Graph (the sandbox's certificate)."
    )
    proxy_url: str | None = Field(
        default=None,
        description="HTTP(S) proxy for the authority, Graph and callback keys (HTTPS_PROXY is not read implicitly).",
    )
    graph_timeout: float = Field(default=30.0, gt=0, description="Seconds before one Graph request times out.")
    graph_max_retries: int = Field(default=5, ge=0, description="Retries on 429/503/504 and transport errors.")
    graph_max_backoff: float = Field(
        default=60.0, gt=0, description="Longest wait in seconds between retries; a longer Retry-After fails at once."
    )

    public_url: str = Field(
        default="", description="Public HTTPS base URL of this instance; callbacks go to <public_url>/api/calling."
    )
    instance_id: str = Field(default_factory=socket.gethostname, description="Name of this instance in logs.")
    callback_openid_url: str = Field(
        default="https://api.aps.skype.com/v1/.well-known/OpenIdConfiguration",
        description="OpenID configuration whose keys sign Graph's call notifications.",
    )
    callback_issuers: list[str] = Field(
        default_factory=lambda: ["https://graph.microsoft.com", "https://api.botframework.com"],
        description='Accepted issuers of call-notification tokens (JSON list, e.g. ["https://graph.microsoft.com"]).',
    )
    api_key: SecretStr | None = Field(default=None, description="Bearer key of the /v1 operator API (unset: /v1 off).")
    output_dir: Path = Field(default=Path("recordings"), description="Where calls' recordings and metadata go.")
    answer_mode: Literal["all", "allow_list", "reject"] = Field(
        default="all", description="Which incoming calls to answer: all, only allowed callers, or none."
    )
    allowed_callers: list[str] = Field(
        default_factory=list, description="Caller ids answered in allow_list mode (JSON list)."
    )
    reject_reason: Literal["none", "busy", "forbidden"] = Field(
        default="busy", description="Reason given when a call is rejected by policy."
    )
    keepalive_interval: float = Field(
        default=1800.0, ge=900.0, le=2700.0, description="Seconds between keepAlives of a live call (15-45 min)."
    )
    compliance_recording: bool = Field(
        default=False, description="Record only after Graph accepted updateRecordingStatus(recording)."
    )
    subscribe_call_records: bool = Field(
        default=False, description="Subscribe to callRecords at start (webhook at <public_url>/api/notifications)."
    )
    max_callback_bytes: int = Field(
        default=1_000_000, gt=0, description="Largest callback or webhook body accepted, in bytes."
    )
    media: Literal["app-hosted", "service-hosted"] = Field(
        default="app-hosted",
        description="app-hosted: calls' audio comes to this instance's WHIP endpoint (recorded, analysed); "
        "service-hosted: Graph hosts the media (IVR only).",
    )
    media_receive: Literal["unmixed", "mixed"] = Field(
        default="unmixed", description="Ask for one audio stream per participant (unmixed) or one mixed stream."
    )
    media_ice_loopback: bool = Field(
        default=False, description="Also offer ICE host candidates on 127.0.0.1 (hosts with only loopback)."
    )
    media_inline_receive: bool = Field(
        default=True,
        description="Decode each RTP packet as it arrives, on the event loop (no jitter-buffer prefetch, no decoder "
        "thread hop); false uses aiortc's stock receive path.",
    )
    event_loop: EventLoop = Field(
        default="auto",
        description="The event loop of the service and its media workers: uvloop (auto: when installed) or "
        "asyncio's own.",
    )
    media_direct_rtp: bool = Field(
        default=True,
        description="With inline receive, take each connection's SRTP packets straight from its socket once DTLS is "
        "up (no aioice queue, no DTLS reader task, no RtpPacket); false leaves them on aiortc's path.",
    )
    media_idle_timeout: float = Field(
        default=10.0,
        ge=0,
        description="Seconds without a packet (RTP or RTCP) from a WHIP publisher after which its connection is "
        "ended as vanished and its files finished; a call whose publishers all vanished and none came back within "
        "as long again is hung up (a standalone session closed). 0 turns this off.",
    )
    media_workers: int = Field(
        default=0,
        ge=-1,
        description="Media worker processes: 0 runs the media in the service process; N >= 1 spreads calls over N "
        "processes (each call owned by one); -1 is one per core, the production choice.",
    )
    max_sdp_bytes: int = Field(default=65_536, gt=0, le=1_000_000, description="Largest WHIP SDP offer, in bytes.")
    vad_backend: Literal["webrtc", "silero"] = Field(
        default="webrtc", description="Voice activity detector: webrtc (webrtcvad) or silero (the [silero] extra)."
    )
    vad_aggressiveness: int = Field(default=2, ge=0, le=3, description="webrtcvad aggressiveness, 0 (least) to 3.")
    speech_start_ms: int = Field(default=60, ge=20, description="Speech this long (ms) starts a segment.")
    speech_stop_ms: int = Field(default=600, ge=20, description="Silence this long (ms) ends a segment.")
    speech_pad_ms: int = Field(default=300, ge=0, description="Audio kept before a segment's start and after its end.")
    speech_max_s: float = Field(default=30.0, gt=1.0, description="Longest segment; a longer one is cut.")
    record_ogg: bool = Field(default=False, description="Also write Ogg/Opus copies of the WAVs when a call ends.")
    transcriber: Literal["pocketsphinx", "openai", "none"] = Field(
        default="pocketsphinx",
        description="Who transcribes speech segments: pocketsphinx (offline, bundled en-US model), openai (any "
        "OpenAI-compatible /v1/audio/transcriptions server) or none.",
    )
    transcriber_workers: int = Field(default=1, ge=1, le=16, description="Segments transcribed at once.")
    transcription_max_in_memory: int = Field(
        default=32, ge=1, description="Waiting segments kept in memory; more wait on disk (none is ever dropped)."
    )
    transcription_language: str | None = Field(default=None, description="Language hint for the openai backend.")
    sphinx_hmm: Path | None = Field(default=None, description="pocketsphinx acoustic model folder (default: en-US).")
    sphinx_lm: Path | None = Field(default=None, description="pocketsphinx language model (default: en-US).")
    sphinx_dict: Path | None = Field(default=None, description="pocketsphinx pronunciation dictionary.")
    openai_base_url: str | None = Field(
        default=None, description="Base URL of the OpenAI-compatible server (e.g. https://api.openai.com)."
    )
    openai_api_key: SecretStr | None = Field(default=None, description="Bearer key of that server.")
    openai_model: str = Field(default="whisper-1", description="Model name sent to that server.")
    prompt_dir: Path = Field(
        default=Path("prompts"), description="Folder whose WAV files app-hosted playPrompt may play (plus https URLs)."
    )
    log_level: LogLevel = Field(default="INFO", description="Least severe log level written (-v: DEBUG).")
    log_format: LogFormat = Field(
        default="text", description="Log lines as text, or as JSON objects (one per line, with call/participant ids)."
    )

    @model_validator(mode="after")
    def _check_credentials(self) -> Self:
        if self.client_secret is not None and self.certificate_path is not None:
            raise ValueError("set either MEDIABOT_CLIENT_SECRET or MEDIABOT_CERTIFICATE_PATH, not both")
        if self.ca_bundle is not None and not self.ca_bundle.is_file():
            raise ValueError(f"MEDIABOT_CA_BUNDLE={self.ca_bundle} is not a file")
        return self

    @property
    def callback_url(self) -> str:
        """Where Graph posts this instance's call notifications."""
        return f"{self.public_url.rstrip('/')}/api/calling"

    @property
    def notification_url(self) -> str:
        """Where Graph posts change notifications (webhooks) for this instance."""
        return f"{self.public_url.rstrip('/')}/api/notifications"

    @property
    def effective_authority(self) -> str:
        """The token authority URL: the configured one, or Microsoft's for the tenant."""
        if self.authority:
            return self.authority.rstrip("/")
        return f"{PUBLIC_AUTHORITY_HOST}/{self.tenant_id}"
