"""Logging for every tickflow process: text or JSON lines, and no secret in either.

``configure_logging(level, fmt, secrets)`` sets the root logger's one handler (stderr); the
commands take the level from ``TICKFLOW_LOG_LEVEL`` (default WARNING). With
``fmt="json"`` (``tickflow --log-format json ...``, or ``TICKFLOW_LOG_FORMAT=json``, which the
processes ``tickflow up`` starts inherit) each record is one JSON object: ``ts`` (ISO 8601,
UTC), ``level``, ``logger``, ``message``, ``process``, and ``exception`` when there is one.

Whatever the format, the handler's ``RedactSecrets`` filter replaces every secret it was given
(the settings' passwords, and the values of ``TICKFLOW_*`` variables whose names say SECRET,
PASSWORD, TOKEN or KEY) with ``***`` in the message, its arguments and the exception text,
before anything is written: a secret that reaches a log call by mistake (an exception carrying
a request, a URL with credentials) still never reaches the log.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
from collections.abc import Iterable

from tickflow.config import Settings
from tickflow.errors import ConfigError

_SECRET_NAME = re.compile(r"SECRET|PASSWORD|TOKEN|KEY", re.IGNORECASE)
#: Values shorter than this are not redacted (they would match everywhere: "1", "true").
MIN_SECRET_LENGTH = 6
MASK = "***"


def settings_secrets(settings: Settings | None) -> list[str]:
    """The secret values of ``settings`` and of the ``TICKFLOW_*`` secret-named variables."""
    found = []
    if settings is not None:
        for secret in (settings.kafka.sasl_password, settings.kafka.ssl_key_password,
                       settings.registry.basic_auth_password):  # fmt: skip
            if secret is not None:
                found.append(secret.get_secret_value())
    found += [value for name, value in os.environ.items() if name.startswith("TICKFLOW_") and _SECRET_NAME.search(name)]
    return [value for value in dict.fromkeys(found) if len(value) >= MIN_SECRET_LENGTH]


class RedactSecrets(logging.Filter):
    """Replaces the given secrets with ``***`` in each record (message, arguments, exception)."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self._values: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        """More secrets to hide (read later: an API key from the file a config names)."""
        self._values |= {s for s in secrets if len(s) >= MIN_SECRET_LENGTH}
        values = sorted(self._values, key=len, reverse=True)
        self._pattern = re.compile("|".join(map(re.escape, values))) if values else None

    def redact(self, text: str) -> str:
        return self._pattern.sub(MASK, text) if self._pattern is not None else text

    def filter(self, record: logging.LogRecord) -> bool:
        if self._pattern is None:
            return True
        message = record.getMessage()  # the arguments merged in: one string to clean
        record.msg, record.args = self.redact(message), None
        if record.exc_info:
            record.exc_text = self.redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "process": record.process,
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            out["exception"] = record.exc_text
        return json.dumps(out, ensure_ascii=False)


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def log_format() -> str:
    """``text`` or ``json``, from ``TICKFLOW_LOG_FORMAT``."""
    value = os.environ.get("TICKFLOW_LOG_FORMAT", "text").lower()
    return value if value in ("text", "json") else "text"


#: The levels ``TICKFLOW_LOG_LEVEL`` may name.
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def log_level() -> str:
    """The level from ``TICKFLOW_LOG_LEVEL`` (default WARNING); a name it does not know is an error
    the command reports, not a silent default."""
    value = os.environ.get("TICKFLOW_LOG_LEVEL", "WARNING").strip().upper()
    if value not in LEVELS:
        raise ConfigError(f"TICKFLOW_LOG_LEVEL={value!r}: one of {', '.join(LEVELS)}")
    return value


def register_secrets(*values: str) -> None:
    """Hide ``values`` in every log record from now on (every handler's redaction filter)."""
    for handler in logging.getLogger().handlers:
        for log_filter in handler.filters:
            if isinstance(log_filter, RedactSecrets):
                log_filter.add(values)


def configure_logging(level: int | str = logging.WARNING, fmt: str | None = None,
                      secrets: Iterable[str] = ()) -> logging.Handler:  # fmt: skip
    """The root logger: one stderr handler, ``fmt`` (default: ``log_format()``), secrets redacted."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if (fmt or log_format()) == "json" else logging.Formatter(TEXT_FORMAT))
    handler.addFilter(RedactSecrets(secrets))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    return handler
