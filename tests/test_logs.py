"""Logging setup: JSON and text lines, the call/participant/session context, redaction, and the CLI's options."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from mediabot import Settings
from mediabot._errors import ConfigError
from mediabot.cli import app, main
from mediabot.logs import (
    PACKET_LOGGERS,
    bind_log_context,
    configure_logging,
    context_with_ids,
    current_log_context,
    env_log_format,
    env_log_level,
    log_context,
    redact,
    reset_log_context,
)

logger = logging.getLogger("tests.logs")
ISO_MS_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


pytestmark = pytest.mark.usefixtures("restore_logging")  # every test may reconfigure the root logger


def json_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


# -- JSON ------------------------------------------------------------------------------------------------------------


def test_json_lines_parse_and_carry_the_known_ids() -> None:
    stream = io.StringIO()
    configure_logging("INFO", "json", stream=stream)
    with log_context(call_id="c-1", participant_id="p-1", session_id="s-1"):
        logger.info("hello %s", "world", extra={"frames": 3, "ratio": 0.5, "ok": True, "none": None, "obj": object()})
        logger.debug("not at INFO")
    with log_context(call_id="c-2"):
        logger.warning("only the call")
    logger.error("no ids")

    first, second, third = json_lines(stream)
    assert ISO_MS_Z.match(first["ts"])
    assert first == {
        "ts": first["ts"],
        "level": "INFO",
        "logger": "tests.logs",
        "message": "hello world",
        "call_id": "c-1",
        "participant_id": "p-1",
        "session_id": "s-1",
        "frames": 3,
        "ratio": 0.5,
        "ok": True,
        "none": None,
    }
    assert (second["level"], second["call_id"]) == ("WARNING", "c-2")
    assert "participant_id" not in second and "session_id" not in second
    assert not {"call_id", "participant_id", "session_id", "exc"} & third.keys()


def test_explicit_extra_wins_over_the_context() -> None:
    stream = io.StringIO()
    configure_logging("INFO", "json", stream=stream)
    with log_context(call_id="c-1", participant_id="p-1"):
        logger.info("about someone else", extra={"participant_id": "p-2"})
    [line] = json_lines(stream)
    assert (line["call_id"], line["participant_id"]) == ("c-1", "p-2")


def test_exceptions_are_serialised_and_redacted() -> None:
    stream = io.StringIO()
    configure_logging("INFO", "json", stream=stream)
    try:
        raise ValueError("refused Bearer eyJhbGciOi.payload.sig")
    except ValueError:
        with log_context(call_id="c-1"):
            logger.exception("the request failed")
    [line] = json_lines(stream)
    assert line["message"] == "the request failed" and line["call_id"] == "c-1"
    assert line["exc"].startswith("Traceback (most recent call last):")
    assert line["exc"].endswith("ValueError: refused Bearer ***")
    assert "eyJhbGciOi" not in stream.getvalue()


# -- text ------------------------------------------------------------------------------------------------------------


def test_text_lines_append_the_known_ids() -> None:
    stream = io.StringIO()
    configure_logging("INFO", "text", stream=stream)
    with log_context(call_id="c-1", session_id="s-1"):
        logger.info("answered")
        with log_context(participant_id="p-1"):
            logger.info("speaking")
    logger.info("idle")
    answered, speaking, idle = stream.getvalue().splitlines()
    stamp = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}"
    assert re.fullmatch(rf"{stamp} INFO tests\.logs: answered \[call=c-1 session=s-1\]", answered)
    assert speaking.endswith("speaking [call=c-1 participant=p-1 session=s-1]")
    assert re.fullmatch(rf"{stamp} INFO tests\.logs: idle", idle)


def test_text_tracebacks_follow_the_line_with_the_ids() -> None:
    stream = io.StringIO()
    configure_logging("INFO", "text", stream=stream)
    try:
        raise RuntimeError("client_secret=hunter2&scope=x")
    except RuntimeError:
        with log_context(call_id="c-1"):
            logger.exception("boom")
    lines = stream.getvalue().splitlines()
    assert lines[0].endswith("boom [call=c-1]")
    assert lines[1] == "Traceback (most recent call last):"
    assert lines[-1] == "RuntimeError: client_secret=***&scope=x"


# -- redaction -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Authorization: Bearer abc.DEF-123_x~+/==", "Authorization: Bearer ***"),
        (
            "POST /token client_id=app&client_secret=s3cr3t&grant_type=x",
            "POST /token client_id=app&client_secret=***&grant_type=x",
        ),
        ('{"client_secret": "a b c", "client_id": "app"}', '{"client_secret": "***", "client_id": "app"}'),
        ("{'access_token': 'eyJ0', 'expires_in': 3599}", "{'access_token': '***', 'expires_in': 3599}"),
        ('{"token_type": "Bearer", "access_token":"xyz"}', '{"token_type": "Bearer", "access_token":"***"}'),
        ("https://h/cb?access_token=tok123 next", "https://h/cb?access_token=*** next"),
        ("MEDIABOT_CLIENT_SECRET=abc", "MEDIABOT_CLIENT_SECRET=***"),
        ("refresh_token: r-1, done", "refresh_token: ***, done"),
        ("call abc: answered (bearer token checked)", "call abc: answered (bearer token checked)"),
    ],
)
def test_redact(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_json_redacts_before_encoding_and_in_extra_fields() -> None:
    stream = io.StringIO()
    configure_logging("INFO", "json", stream=stream)
    logger.info("token response %s", '{"access_token": "SECRET1"}', extra={"header": "Bearer SECRET2"})
    [line] = json_lines(stream)
    assert line["message"] == 'token response {"access_token": "***"}'
    assert line["header"] == "Bearer ***"
    assert "SECRET" not in stream.getvalue()


# -- configuration ---------------------------------------------------------------------------------------------------


def test_configuring_twice_replaces_its_handler_and_keeps_others() -> None:
    other = logging.StreamHandler(io.StringIO())
    logging.getLogger().addHandler(other)
    first, second = io.StringIO(), io.StringIO()
    configure_logging("INFO", "text", stream=first)
    configure_logging("INFO", "json", stream=second)
    configure_logging("INFO", "json", stream=second)
    logger.info("once")
    assert first.getvalue() == ""
    assert [line["message"] for line in json_lines(second)] == ["once"]
    assert other in logging.getLogger().handlers


def test_levels_and_the_chatty_libraries() -> None:
    stream = io.StringIO()
    configure_logging("DEBUG", "json", stream=stream)
    assert logging.getLogger("httpx").level == logging.getLogger("aioice").level == logging.DEBUG
    logger.debug("seen")
    configure_logging(logging.INFO, "json", stream=stream)
    assert logging.getLogger("httpx").level == logging.getLogger("aioice").level == logging.WARNING
    configure_logging(logging.WARNING, "json", stream=stream)
    logger.info("not seen")
    assert [line["message"] for line in json_lines(stream)] == ["seen"]
    with pytest.raises(ValueError, match="unknown log level"):
        configure_logging("LOUD")
    with pytest.raises(ValueError, match="unknown log format"):
        configure_logging("INFO", "xml")  # type: ignore[arg-type]


# -- context ---------------------------------------------------------------------------------------------------------


async def test_context_follows_tasks_created_inside_it_and_threads() -> None:
    stream = io.StringIO()
    configure_logging("INFO", "json", stream=stream)
    go = asyncio.Event()

    async def later(what: str) -> None:
        await go.wait()
        logger.info(what)

    with log_context(call_id="c-1"):
        inside = asyncio.create_task(later("task made inside"))
        await asyncio.to_thread(logger.info, "in a worker thread")
    outside = asyncio.create_task(later("task made outside"))
    go.set()  # both log only now, after the block has ended
    await asyncio.gather(inside, outside)
    by_message = {line["message"]: line.get("call_id") for line in json_lines(stream)}
    assert by_message == {"in a worker thread": "c-1", "task made inside": "c-1", "task made outside": None}


async def test_bind_for_a_whole_task_and_reset() -> None:
    async def session() -> dict[str, str]:
        bind_log_context(call_id="c-1", session_id="s-1")
        token = bind_log_context(participant_id="p-1")
        during = current_log_context()
        reset_log_context(token)
        assert current_log_context() == {"call_id": "c-1", "session_id": "s-1"}
        return during

    assert await asyncio.create_task(session()) == {"call_id": "c-1", "session_id": "s-1", "participant_id": "p-1"}
    assert current_log_context() == {}  # the task's binding stayed in the task
    with log_context(call_id="c-1", participant_id="p-1"), log_context(participant_id=None):
        assert current_log_context() == {"call_id": "c-1"}
    with pytest.raises(TypeError, match="unknown log context field"):
        bind_log_context(call="c-1")


async def test_context_with_ids_for_create_task() -> None:
    async def ids() -> dict[str, str]:
        return current_log_context()

    with log_context(call_id="c-1", participant_id="p-1"):
        context = context_with_ids(call_id="c-2", participant_id=None)
        assert await asyncio.get_running_loop().create_task(ids(), context=context) == {"call_id": "c-2"}
        assert current_log_context() == {"call_id": "c-1", "participant_id": "p-1"}


# -- environment and CLI ---------------------------------------------------------------------------------------------


def test_env_values_are_validated() -> None:
    assert (env_log_level({}), env_log_format({})) == ("INFO", "text")
    assert env_log_level({"MEDIABOT_LOG_LEVEL": "ERROR"}) == "ERROR"
    assert env_log_format({"MEDIABOT_LOG_FORMAT": "json"}) == "json"
    with pytest.raises(ConfigError, match=r"MEDIABOT_LOG_LEVEL='loud' is not valid; use one of DEBUG, INFO"):
        env_log_level({"MEDIABOT_LOG_LEVEL": "loud"})
    with pytest.raises(ConfigError, match=r"MEDIABOT_LOG_FORMAT='xml' is not valid; use one of text, json"):
        env_log_format({"MEDIABOT_LOG_FORMAT": "xml"})


def unindexable(tmp_path: Path) -> Path:
    """An output folder whose only call folder makes ``recordings reindex`` log a warning."""
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "call.json").write_text("[]")
    return tmp_path


def test_cli_log_format_json(tmp_path: Path) -> None:
    out = unindexable(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "mediabot", "--log-format", "json", "recordings", "reindex", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    [line] = [json.loads(text) for text in done.stderr.splitlines()]
    assert (line["level"], line["logger"]) == ("WARNING", "mediabot.store.index")
    assert line["message"].startswith("not indexing ") and ISO_MS_Z.match(line["ts"])


def test_cli_reads_the_format_and_level_from_the_environment(tmp_path: Path) -> None:
    out = unindexable(tmp_path)
    runner = CliRunner()
    json_env = {"MEDIABOT_LOG_FORMAT": "json", "MEDIABOT_LOG_LEVEL": None}
    result = runner.invoke(app, ["recordings", "reindex", "--out", str(out)], env=json_env)
    assert result.exit_code == 0, result.output
    (line,) = [json.loads(line) for line in result.stderr.splitlines()]
    assert line["level"] == "WARNING"
    result = runner.invoke(app, ["--log-format", "text", "recordings", "reindex", "--out", str(out)], env=json_env)
    assert " WARNING mediabot.store.index: not indexing " in result.stderr  # the option wins over the variable
    quiet = {"MEDIABOT_LOG_FORMAT": None, "MEDIABOT_LOG_LEVEL": "ERROR"}
    result = runner.invoke(app, ["recordings", "reindex", "--out", str(out)], env=quiet)
    assert result.exit_code == 0 and result.stderr == ""
    assert logging.getLogger().level == logging.ERROR
    runner.invoke(app, ["-v", "recordings", "reindex", "--out", str(out)], env=quiet)
    assert logging.getLogger().level == logging.DEBUG  # --verbose wins over MEDIABOT_LOG_LEVEL


@pytest.mark.parametrize("name", ["MEDIABOT_LOG_FORMAT", "MEDIABOT_LOG_LEVEL"])
def test_a_bad_variable_is_one_line_and_exit_2(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(name, "xml")
    monkeypatch.setattr(sys, "argv", ["mediabot", "recordings", "list", "--out", str(tmp_path)])
    with pytest.raises(SystemExit) as exited:
        main()
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.splitlines()[0].startswith(f"error: {name}='xml' is not valid; use one of ")
    assert "hint:" in err and "Traceback" not in err


def test_settings_use_the_same_values(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings(_env_file=None)
    assert (settings.log_level, settings.log_format) == ("INFO", "text")
    monkeypatch.setenv("MEDIABOT_LOG_LEVEL", "DEBUG")
    monkeypatch.setenv("MEDIABOT_LOG_FORMAT", "json")
    settings = Settings(_env_file=None)
    assert (settings.log_level, settings.log_format) == ("DEBUG", "json")
    monkeypatch.setenv("MEDIABOT_LOG_FORMAT", "xml")
    with pytest.raises(ValidationError, match="log_format"):
        Settings(_env_file=None)


def test_per_packet_loggers_stay_quiet_at_debug_unless_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    """aiortc decides per receiver whether to log every packet; at our DEBUG it must not, unless asked."""
    monkeypatch.delenv("MEDIABOT_LOG_PACKETS", raising=False)
    configure_logging("DEBUG", stream=io.StringIO())
    for name in PACKET_LOGGERS:
        assert not logging.getLogger(name).isEnabledFor(logging.DEBUG), name
    assert logging.getLogger("aiortc.rtcpeerconnection").isEnabledFor(logging.DEBUG)
    monkeypatch.setenv("MEDIABOT_LOG_PACKETS", "1")
    configure_logging("DEBUG", stream=io.StringIO())
    assert all(logging.getLogger(name).isEnabledFor(logging.DEBUG) for name in PACKET_LOGGERS)
