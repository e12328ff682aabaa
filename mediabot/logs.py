"""Logging setup: one root handler writing text or JSON lines, with the call, participant and session ids attached.

The ids come from a context variable, so they follow the code that concerns a call into the tasks it creates::

    with log_context(call_id=call.id):
        logger.info("answered")  # ... INFO mediabot.calls.manager: answered [call=<id>]

:class:`LogContextFilter` (installed on the handler by :func:`configure_logging`) copies the bound ids into each
record unless the record already carries one (``extra={"participant_id": ...}`` wins). Both formatters pass messages
through :func:`redact`, a cheap safeguard against bearer tokens and client secrets reaching the logs.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import math
import os
import re
import sys
import time
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Any, Literal, TextIO, cast, get_args

from mediabot._errors import ConfigError

__all__ = [
    "CHATTY_LOGGERS",
    "CONTEXT_FIELDS",
    "PACKET_LOGGERS",
    "JsonFormatter",
    "LogContextFilter",
    "LogFormat",
    "LogLevel",
    "TextFormatter",
    "bind_log_context",
    "configure_logging",
    "context_with_ids",
    "current_log_context",
    "env_log_format",
    "env_log_level",
    "log_context",
    "redact",
    "reset_log_context",
]

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]
LogFormat = Literal["text", "json"]

CONTEXT_FIELDS = ("call_id", "participant_id", "session_id")
"""The record attributes the log context fills, in the order they are shown."""

_LABELS = {"call_id": "call", "participant_id": "participant", "session_id": "session"}
_TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

_ids: contextvars.ContextVar[Mapping[str, str]] = contextvars.ContextVar(
    "mediabot_log_context", default=MappingProxyType({})
)

# -- context ---------------------------------------------------------------------------------------------------------


def bind_log_context(**ids: str | None) -> contextvars.Token[Mapping[str, str]]:
    """Bind ids (``call_id``, ``participant_id``, ``session_id``) for the rest of this task; None unbinds one.

    For code where a ``with`` block does not fit (the start of a long-running task). The token undoes it with
    :func:`reset_log_context`; a task that binds for its whole life needs no reset (its context ends with it).
    """
    unknown = sorted(ids.keys() - set(CONTEXT_FIELDS))
    if unknown:
        raise TypeError(f"unknown log context field(s) {unknown}; known: {list(CONTEXT_FIELDS)}")
    merged = dict(_ids.get())
    for key, value in ids.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = str(value)
    return _ids.set(MappingProxyType(merged))


def reset_log_context(token: contextvars.Token[Mapping[str, str]]) -> None:
    """Undo a :func:`bind_log_context` (in the same task)."""
    _ids.reset(token)


@contextlib.contextmanager
def log_context(**ids: str | None) -> Iterator[None]:
    """Bind ids for the code inside the block and the tasks it creates; None unbinds one (e.g. a participant)."""
    token = bind_log_context(**ids)
    try:
        yield
    finally:
        _ids.reset(token)


def current_log_context() -> dict[str, str]:
    """The ids bound here, e.g. to pass to a thread that does not inherit the context."""
    return dict(_ids.get())


def context_with_ids(**ids: str | None) -> contextvars.Context:
    """A copy of the current context with ids bound: ``loop.create_task(coro, context=context_with_ids(...))``."""
    context = contextvars.copy_context()
    context.run(bind_log_context, **ids)
    return context


class LogContextFilter(logging.Filter):
    """Copies the bound ids into each record that does not carry them already; never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Attach the context's ids (an explicit ``extra=`` value wins)."""
        for key, value in _ids.get().items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


# -- formatting ------------------------------------------------------------------------------------------------------

# Names whose value is a secret wherever it appears as ``name=value``, ``name: value`` or ``"name": "value"``: OAuth
# credentials, any ``token`` (the WHIP bearer in a blob or a /v1/sessions answer, Graph's recordingAccessToken), the
# webhook clientState, the API key, the media config blob (it carries the WHIP bearer) and the console cookie.
_SENSITIVE_NAMES = (
    r"(?i:client_secret|client_assertion|access_?token|refresh_token|id_token|token|client_?state|api_?key|password"
    r"|blob|mediabot_console)"
)
# HTTP headers whose value is a secret, as httpcore's DEBUG lines show them (``(b'set-cookie', b'...')``).
_SENSITIVE_HEADERS = r"(?i:authorization|proxy-authorization|cookie|set-cookie|x-api-key)"
_SECRET = re.compile(
    r"(?P<pem>-----BEGIN [A-Z ]*PRIVATE KEY-----)[\s\S]*?(?:-----END [A-Z ]*PRIVATE KEY-----|$)"
    rf"|(?P<header>\(b?[\"']{_SENSITIVE_HEADERS}[\"'],\s*b?[\"'])[^\"']*"
    r"|(?P<cookie>\b(?i:set-cookie|cookie):[ \t]*)[^\r\n]+"
    # aiortc logs whole SDPs at DEBUG; the ICE password would let anyone pass the connectivity checks.
    r"|(?P<icepwd>\ba=ice-pwd:)\S+"
    r"|(?P<bearer>\bBearer\s+)[A-Za-z0-9\-._~+/]+=*"
    r"|(?P<basic>\bBasic\s+)[A-Za-z0-9+/]{8,}=*"
    rf"|(?P<double>{_SENSITIVE_NAMES}[\"']?\s*[:=]\s*\")[^\"]*"
    rf"|(?P<single>{_SENSITIVE_NAMES}[\"']?\s*[:=]\s*')[^']*"
    rf"|(?P<bare>{_SENSITIVE_NAMES}[\"']?\s*[:=]\s*)[^\s\"'&,;)}}\]]+"
    # Any JWT, wherever it is (a URL, a body, an exception): access, callback and assertion tokens all look so.
    r"|eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*"
)


def _mask(match: re.Match[str]) -> str:
    if match.group("pem") is not None:
        return "[private key redacted]"
    return next((kept for kept in match.groups() if kept), "") + "***"


def redact(text: str) -> str:
    """``text`` with secrets replaced by ``***``: bearer and basic credentials, secret-bearing headers (cookies,
    authorization), named values (client_secret, tokens, clientState, API key, media blob), SDP ICE passwords,
    JWTs and private keys."""
    return _SECRET.sub(_mask, text)


def _context_ids(record: logging.LogRecord) -> dict[str, str]:
    return {key: str(value) for key in CONTEXT_FIELDS if (value := getattr(record, key, None)) is not None}


class TextFormatter(logging.Formatter):
    """``<time> <LEVEL> <logger>: <message> [call=… participant=… session=…]`` (the ids that are known)."""

    def __init__(self) -> None:
        super().__init__(_TEXT_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:
        """The first line, with the known ids appended."""
        line = super().formatMessage(record)
        ids = _context_ids(record)
        if not ids:
            return line
        return line + " [" + " ".join(f"{_LABELS[key]}={value}" for key, value in ids.items()) + "]"

    def format(self, record: logging.LogRecord) -> str:
        """The whole entry (traceback included), redacted."""
        return redact(super().format(record))


# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "taskName",
    "color_message",  # uvicorn's copy of the message with terminal colours
}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, the known ids, exc, and primitive ``extra=`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON (values redacted before encoding, so quoting cannot hide a secret)."""
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        data: dict[str, Any] = {
            "ts": f"{stamp}.{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        data.update(_context_ids(record))
        if record.exc_info and record.exc_info[0] is not None:
            data["exc"] = redact(self.formatException(record.exc_info))
        elif record.exc_text:
            data["exc"] = redact(record.exc_text)
        if record.stack_info:
            data["stack"] = redact(self.formatStack(record.stack_info))
        for key, value in record.__dict__.items():
            if key in _STANDARD or key in data or key in CONTEXT_FIELDS:
                continue
            if isinstance(value, str):
                data[key] = redact(value)
            elif value is None or isinstance(value, bool | int) or (isinstance(value, float) and math.isfinite(value)):
                data[key] = value
        return json.dumps(data, ensure_ascii=False)


# -- setup -----------------------------------------------------------------------------------------------------------


class _Handler(logging.StreamHandler[TextIO]):
    """The handler :func:`configure_logging` installs (its type tells it apart from anyone else's).

    Without an explicit stream it writes to whatever ``sys.stderr`` is when a record is emitted, so a caller that
    swaps stderr for a while (a test runner, a CLI harness) never leaves it writing to a closed file.
    """

    def __init__(self, stream: TextIO | None) -> None:
        super().__init__(stream)
        self._follow_stderr = stream is None

    def emit(self, record: logging.LogRecord) -> None:
        """Write one record (to the current ``sys.stderr`` when no stream was given)."""
        if self._follow_stderr:
            self.stream = sys.stderr
        super().emit(record)


def _level_number(level: str | int) -> int:
    if isinstance(level, int):
        return level
    number = logging.getLevelNamesMapping().get(level.upper())
    if number is None:
        raise ValueError(f"unknown log level {level!r}; use one of {', '.join(get_args(LogLevel))}")
    return number


#: Libraries that log routine work at INFO (httpx every request, aioice every ICE candidate pair).
CHATTY_LOGGERS = ("httpx", "aioice")
#: aiortc's RTP/RTCP/DTLS modules log every packet at DEBUG (a large share of a stream's CPU when on): they stay at
#: INFO even at DEBUG, unless ``MEDIABOT_LOG_PACKETS=1``.
PACKET_LOGGERS = ("aiortc.rtcrtpreceiver", "aiortc.rtcrtpsender", "aiortc.rtcdtlstransport", "aiortc.rtcsctptransport")


def configure_logging(level: str | int = "INFO", fmt: LogFormat = "text", stream: TextIO | None = None) -> None:
    """(Re)configure the root logger: one handler on ``stream`` (default: ``sys.stderr`` now) in ``fmt``.

    Calling it again replaces the handler it installed before (others, such as pytest's, stay). The libraries in
    :data:`CHATTY_LOGGERS` stay at WARNING unless ``level`` is DEBUG; :data:`PACKET_LOGGERS` stay at INFO unless
    ``MEDIABOT_LOG_PACKETS=1``.
    """
    number = _level_number(level)
    if fmt not in get_args(LogFormat):
        raise ValueError(f"unknown log format {fmt!r}; use one of {', '.join(get_args(LogFormat))}")
    handler = _Handler(stream)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(LogContextFilter())
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(number)
    for chatty in CHATTY_LOGGERS:
        logging.getLogger(chatty).setLevel(logging.DEBUG if number <= logging.DEBUG else logging.WARNING)
    packets = os.environ.get("MEDIABOT_LOG_PACKETS") == "1"
    for per_packet in PACKET_LOGGERS:
        logging.getLogger(per_packet).setLevel(logging.NOTSET if packets else max(number, logging.INFO))


def _env_choice(name: str, allowed: tuple[str, ...], default: str, environ: Mapping[str, str] | None) -> str:
    value = (os.environ if environ is None else environ).get(name)
    if value is None:
        return default
    if value not in allowed:
        raise ConfigError(f"{name}={value!r} is not valid; use one of {', '.join(allowed)}")
    return value


def env_log_level(environ: Mapping[str, str] | None = None) -> LogLevel:
    """``MEDIABOT_LOG_LEVEL`` from the environment (default INFO); :class:`ConfigError` if it is not a level."""
    return cast(LogLevel, _env_choice("MEDIABOT_LOG_LEVEL", get_args(LogLevel), "INFO", environ))


def env_log_format(environ: Mapping[str, str] | None = None) -> LogFormat:
    """``MEDIABOT_LOG_FORMAT`` from the environment (default text); :class:`ConfigError` if it is not text or json."""
    return cast(LogFormat, _env_choice("MEDIABOT_LOG_FORMAT", get_args(LogFormat), "text", environ))
