"""Configuration: files, environment overrides, secrets that never print."""

from __future__ import annotations

from pathlib import Path

import pytest

from tickflow.config import load_settings
from tickflow.errors import ConfigError


def test_defaults_point_at_the_local_stack(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TICKFLOW_CONFIG", raising=False)
    settings = load_settings()
    assert settings.kafka.bootstrap_servers == "127.0.0.1:9092"
    assert settings.registry.url.endswith("/apis/ccompat/v7")


def test_external_cluster_from_file_passes_tls_and_sasl_to_clients(tmp_path: Path) -> None:
    config = tmp_path / "tickflow.yaml"
    config.write_text(
        """
kafka:
  bootstrap_servers: b1.example:9093,b2.example:9093
  security_protocol: SASL_SSL
  sasl_mechanism: SCRAM-SHA-512
  sasl_username: svc-tickflow
  sasl_password: s3cr3t-kafka
  ssl_ca_location: /etc/ca.pem
  extra: {client.rack: eu-1a}
registry:
  url: https://registry.example/apis/ccompat/v7
  basic_auth_user: reg-user
  basic_auth_password: s3cr3t-registry
"""
    )
    settings = load_settings(config)
    kafka = settings.kafka.client_config()
    assert kafka["bootstrap.servers"] == "b1.example:9093,b2.example:9093"
    assert kafka["security.protocol"] == "sasl_ssl"
    assert kafka["sasl.mechanism"] == "SCRAM-SHA-512"
    assert kafka["sasl.password"] == "s3cr3t-kafka"
    assert kafka["ssl.ca.location"] == "/etc/ca.pem"
    assert kafka["client.rack"] == "eu-1a"
    assert settings.registry.client_config()["basic.auth.user.info"] == "reg-user:s3cr3t-registry"
    # Secrets never show in the settings' text (logs, error messages, status output).
    shown = repr(settings) + str(settings) + settings.model_dump_json()
    assert "s3cr3t" not in shown


def test_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "tickflow.yaml"
    config.write_text("kafka:\n  bootstrap_servers: from-file:9092\n")
    monkeypatch.setenv("TICKFLOW_KAFKA__BOOTSTRAP_SERVERS", "from-env:9092")
    monkeypatch.setenv("TICKFLOW_REGISTRY__URL", "http://reg:8081")
    settings = load_settings(config)
    assert settings.kafka.bootstrap_servers == "from-env:9092"
    assert settings.registry.url == "http://reg:8081"


def test_sasl_without_credentials_is_a_clear_error(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("kafka:\n  security_protocol: SASL_SSL\n  sasl_mechanism: PLAIN\n")
    with pytest.raises(ConfigError, match="needs sasl_username and sasl_password"):
        load_settings(config)


@pytest.mark.parametrize(
    ("text", "message"),
    [("kafka: [1, 2\n", "not valid YAML"), ("- a\n- b\n", "mapping"), ("kafkaa: {}\n", "invalid configuration")],
)
def test_bad_config_files_are_clear_errors(tmp_path: Path, text: str, message: str) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_settings(config)


def test_missing_config_file() -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_settings("/nonexistent/tickflow.yaml")
