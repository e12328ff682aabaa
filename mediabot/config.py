"""Settings: one pydantic-settings class, read once (environment ``MEDIABOT_*`` or ``.env``) and passed in."""

from __future__ import annotations

from pathlib import Path
from typing import Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

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
    graph_timeout: float = Field(default=30.0, gt=0, description="Seconds before one Graph request times out.")
    graph_max_retries: int = Field(default=5, ge=0, description="Retries on 429/503/504 and transport errors.")
    graph_max_backoff: float = Field(default=60.0, gt=0, description="Cap in seconds on one wait between retries.")

    @model_validator(mode="after")
    def _check_credentials(self) -> Self:
        if self.client_secret is not None and self.certificate_path is not None:
            raise ValueError("set either MEDIABOT_CLIENT_SECRET or MEDIABOT_CERTIFICATE_PATH, not both")
        if self.ca_bundle is not None and not self.ca_bundle.is_file():
            raise ValueError(f"MEDIABOT_CA_BUNDLE={self.ca_bundle} is not a file")
        return self

    @property
    def effective_authority(self) -> str:
        """The token authority URL: the configured one, or Microsoft's for the tenant."""
        if self.authority:
            return self.authority.rstrip("/")
        return f"{PUBLIC_AUTHORITY_HOST}/{self.tenant_id}"
