"""``CallConfig``: how the call manager answers, keeps calls alive, reconciles and gates recording."""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from mediabot.calls.policy import AnswerPolicy

__all__ = ["CallConfig"]


class CallConfig(BaseModel):
    """Settings of the :class:`~mediabot.calls.manager.CallManager`; durations are in seconds."""

    model_config = ConfigDict(frozen=True)

    callback_url: str = Field(description="HTTPS URL Graph posts this instance's call notifications to.")
    answer_policy: AnswerPolicy = Field(default_factory=AnswerPolicy, description="Which incoming calls to answer.")
    keepalive_interval: float = Field(
        default=1800.0, ge=900.0, le=2700.0, description="Seconds between keepAlive requests (15 to 45 minutes)."
    )
    reconcile_after: float = Field(
        default=600.0, gt=0, description="Seconds without a notification after which the call is checked by GET."
    )
    compliance_recording: bool = Field(
        default=False, description="Announce recording with updateRecordingStatus and gate media on its success."
    )
    operation_timeout: float = Field(
        default=120.0, gt=0, description="Seconds to wait for an operation's completion notification."
    )
    answer_deadline: float = Field(
        default=15.0, gt=0, description="Seconds after the incoming notification past which a call is not answered."
    )
    delta_roster: bool = Field(
        default=False, description="Ask for delta rosters when answering (callOptions.isDeltaRosterEnabled)."
    )
    ended_calls_kept: int = Field(default=200, ge=0, description="How many ended calls stay listed.")

    @field_validator("callback_url")
    @classmethod
    def _absolute_http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("https", "http") or not parts.netloc:
            raise ValueError("callback_url must be an absolute https:// URL")
        return value
