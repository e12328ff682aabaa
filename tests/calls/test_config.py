"""CallConfig validation."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from mediabot.calls import AnswerPolicy, CallConfig


def test_defaults() -> None:
    config = CallConfig(callback_url="https://bot.example.com/api/calling")
    assert config.keepalive_interval == 1800
    assert config.answer_deadline == 15
    assert config.answer_policy == AnswerPolicy.answer_all()
    assert not config.compliance_recording


@pytest.mark.parametrize("interval", [899, 2701, 0])
def test_keepalive_interval_is_15_to_45_minutes(interval: float) -> None:
    with pytest.raises(ValidationError):
        CallConfig(callback_url="https://bot.example.com/api/calling", keepalive_interval=interval)


@pytest.mark.parametrize("url", ["bot.example.com/api", "ftp://bot.example.com/api", ""])
def test_callback_url_must_be_absolute(url: str) -> None:
    with pytest.raises(ValidationError):
        CallConfig(callback_url=url)
