"""Logs: JSON lines when asked, and no secret in any format, wherever it hides in a record."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys

import pytest

from tickflow.config import KafkaSettings, RegistrySettings, Settings
from tickflow.logs import JsonFormatter, RedactSecrets, configure_logging, settings_secrets

SECRET = "s3cr3t-Passw0rd"


@pytest.fixture
def captured() -> logging.Logger:
    logger = logging.getLogger("tickflow.test.logs")
    logger.propagate = False
    logger.handlers.clear()
    return logger


def handler_into(stream: io.StringIO, fmt: logging.Formatter) -> logging.Handler:
    handler = logging.StreamHandler(stream)
    handler.setFormatter(fmt)
    handler.addFilter(RedactSecrets([SECRET, "short"]))
    return handler


def test_a_secret_is_redacted_in_the_message_its_arguments_and_the_exception(captured: logging.Logger) -> None:
    for fmt in (logging.Formatter("%(levelname)s %(message)s"), JsonFormatter()):
        out = io.StringIO()
        captured.handlers = [handler_into(out, fmt)]
        captured.warning("connecting with password=%s to %s", SECRET, f"https://user:{SECRET}@registry")
        try:
            raise RuntimeError(f"auth failed for {SECRET}")
        except RuntimeError:
            captured.exception("request failed")
        text = out.getvalue()
        assert SECRET not in text and "***" in text
        assert "auth failed for ***" in text and "short" not in text  # short values are left alone


def test_json_lines_carry_the_fields_and_the_exception(captured: logging.Logger) -> None:
    out = io.StringIO()
    captured.handlers = [handler_into(out, JsonFormatter())]
    captured.error("book %s invalid", "binance-spot:BTC-USDT")
    try:
        1 / 0  # noqa: B018
    except ZeroDivisionError:
        captured.exception("failed")
    first, second = (json.loads(line) for line in out.getvalue().splitlines() if line.startswith("{"))
    assert first["level"] == "ERROR" and first["logger"] == "tickflow.test.logs"
    assert first["message"] == "book binance-spot:BTC-USDT invalid" and first["ts"].endswith("Z")
    assert "ZeroDivisionError" in second["exception"]


def test_settings_secrets_come_from_the_settings_and_secret_named_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in __import__("os").environ if n.startswith(("TICKFLOW_KAFKA", "TICKFLOW_REGISTRY"))]:
        monkeypatch.delenv(name)  # the environment would override the settings given here
    monkeypatch.setenv("TICKFLOW_BINANCE_API_SECRET", "abcdef123456")
    monkeypatch.setenv("TICKFLOW_PROCESSORS__BOOK_TOPIC", "tickflow.book.other")  # not a secret name
    kafka = KafkaSettings(security_protocol="SASL_SSL", sasl_mechanism="PLAIN", sasl_username="u", sasl_password=SECRET)
    registry = RegistrySettings(basic_auth_user="r", basic_auth_password="registry-pass")
    settings = Settings(kafka=kafka, registry=registry)
    found = settings_secrets(settings)
    assert SECRET in found and "registry-pass" in found and "abcdef123456" in found
    assert "tickflow.book.other" not in found


def test_a_process_logs_json_without_the_secret_of_its_environment() -> None:
    """As a process sees it: a secret in a ``TICKFLOW_*`` variable, the CLI's own secret lookup,
    JSON logs, a log call that carries the secret."""
    code = ("import logging; import tickflow.logs as logs; from tickflow.cli import _secrets; "
            "logs.configure_logging(logging.WARNING, 'json', _secrets()); "
            "logging.getLogger('x').warning('token is %s', 'zz-very-secret-zz')")  # fmt: skip
    env = {"TICKFLOW_REGISTRY__BASIC_AUTH_PASSWORD": "zz-very-secret-zz", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    lines = [json.loads(line) for line in out.stderr.splitlines() if line.startswith("{")]
    assert lines and lines[-1]["message"] == "token is ***", out.stderr
    assert "zz-very-secret-zz" not in out.stderr


def test_configure_logging_replaces_the_root_handler() -> None:
    root = logging.getLogger()
    before = list(root.handlers)
    try:
        handler = configure_logging(logging.INFO, "json", [SECRET])
        assert root.handlers == [handler] and isinstance(handler.formatter, JsonFormatter)
    finally:
        root.handlers = before


def test_the_log_level_comes_from_the_environment_and_a_bad_one_is_an_error() -> None:
    """``TICKFLOW_LOG_LEVEL=debug`` lets a command's debug lines through; a level nobody knows
    stops the command with a message naming the choices (not a silent WARNING)."""
    env = {"PATH": "/usr/bin:/bin", "TICKFLOW_LOG_LEVEL": "debug"}
    probe = "import logging, tickflow.logs as logs; logs.configure_logging(logs.log_level()); "
    debug = subprocess.run([sys.executable, "-c", probe + "logging.getLogger('p').debug('visible')"], env=env,
                           capture_output=True, text=True, timeout=60)  # fmt: skip
    assert "DEBUG p: visible" in debug.stderr
    env["TICKFLOW_LOG_LEVEL"] = "loud"
    bad = subprocess.run([sys.executable, "-m", "tickflow.cli", "--help"], env=env, capture_output=True, text=True,
                         timeout=60)  # fmt: skip
    assert bad.returncode == 1
    assert "TICKFLOW_LOG_LEVEL='LOUD'" in bad.stdout + bad.stderr and "DEBUG" in bad.stdout + bad.stderr
