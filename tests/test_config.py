from pathlib import Path

import pytest
from pydantic import ValidationError

from mediabot import Settings


def test_settings_come_from_the_environment_with_the_mediabot_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDIABOT_TENANT_ID", "t1")
    monkeypatch.setenv("MEDIABOT_CLIENT_ID", "c1")
    monkeypatch.setenv("MEDIABOT_CLIENT_SECRET", "s3cret")
    settings = Settings(_env_file=None)
    assert settings.tenant_id == "t1"
    assert settings.effective_authority == "https://login.microsoftonline.com/t1"
    assert settings.client_secret is not None and settings.client_secret.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(settings)


def test_secret_and_certificate_together_are_refused(tmp_path: Path) -> None:
    pem = tmp_path / "app.pem"
    pem.write_text("x")
    with pytest.raises(ValidationError, match="not both"):
        Settings(_env_file=None, client_secret="s", certificate_path=pem)


def test_a_missing_ca_bundle_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="is not a file"):
        Settings(_env_file=None, ca_bundle=tmp_path / "nope.pem")


def test_the_media_idle_timeout_comes_from_the_environment_and_zero_turns_it_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert Settings(_env_file=None).media_idle_timeout == 10.0
    monkeypatch.setenv("MEDIABOT_MEDIA_IDLE_TIMEOUT", "2.5")
    assert Settings(_env_file=None).media_idle_timeout == 2.5
    monkeypatch.setenv("MEDIABOT_MEDIA_IDLE_TIMEOUT", "0")
    assert Settings(_env_file=None).media_idle_timeout == 0.0
    monkeypatch.setenv("MEDIABOT_MEDIA_IDLE_TIMEOUT", "-1")
    with pytest.raises(ValidationError, match="media_idle_timeout"):
        Settings(_env_file=None)
