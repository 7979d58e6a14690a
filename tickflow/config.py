"""Configuration: one settings object, read from a YAML file and ``TICKFLOW_*`` variables.

Precedence (highest first): environment variables (``TICKFLOW_KAFKA__BOOTSTRAP_SERVERS``,
``TICKFLOW_REGISTRY__URL``, ...), the YAML file named by ``--config`` or ``TICKFLOW_CONFIG``,
then the defaults, which point at the local stack started by ``tickflow infra up``.

Secrets (SASL passwords, registry credentials) are ``SecretStr``: they print as ``**********``
and are only unwrapped where a client is built.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from tickflow.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parent.parent


class KafkaSettings(BaseModel):
    """Where Kafka is and how to talk to it; passed through to every Kafka client."""

    bootstrap_servers: str = "127.0.0.1:9092"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_ca_location: str | None = None
    ssl_certificate_location: str | None = None
    ssl_key_location: str | None = None
    ssl_key_password: SecretStr | None = None
    #: Extra librdkafka properties, passed through unchanged (for example ``client.rack``).
    extra: dict[str, str | int | bool] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _sasl_needs_credentials(self) -> KafkaSettings:
        if (
            self.security_protocol.startswith("SASL")
            and self.sasl_mechanism
            in (
                "PLAIN",
                "SCRAM-SHA-256",
                "SCRAM-SHA-512",
            )
            and (not self.sasl_username or self.sasl_password is None)
        ):
            raise ValueError(
                f"{self.security_protocol} with {self.sasl_mechanism} needs sasl_username and sasl_password"
            )
        return self

    def client_config(self) -> dict[str, Any]:
        """librdkafka properties common to producers, consumers and admin clients."""
        conf: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap_servers,
            "security.protocol": self.security_protocol.lower(),
        }
        optional = {
            "sasl.mechanism": self.sasl_mechanism,
            "sasl.username": self.sasl_username,
            "sasl.password": self.sasl_password.get_secret_value() if self.sasl_password else None,
            "ssl.ca.location": self.ssl_ca_location,
            "ssl.certificate.location": self.ssl_certificate_location,
            "ssl.key.location": self.ssl_key_location,
            "ssl.key.password": self.ssl_key_password.get_secret_value() if self.ssl_key_password else None,
        }
        conf.update({k: v for k, v in optional.items() if v is not None})
        conf.update(self.extra)
        return conf


class RegistrySettings(BaseModel):
    """A Confluent-compatible schema registry (Apicurio ccompat, Confluent, Karapace, Redpanda)."""

    url: str = "http://127.0.0.1:8081/apis/ccompat/v7"
    basic_auth_user: str | None = None
    basic_auth_password: SecretStr | None = None
    ssl_ca_location: str | None = None
    #: How long to keep retrying an unreachable registry before raising ``RegistryUnavailable``.
    retry_seconds: float = 10.0

    def client_config(self) -> dict[str, Any]:
        """Configuration for ``confluent_kafka.schema_registry.SchemaRegistryClient``."""
        conf: dict[str, Any] = {"url": self.url}
        if self.basic_auth_user:
            password = self.basic_auth_password.get_secret_value() if self.basic_auth_password else ""
            conf["basic.auth.user.info"] = f"{self.basic_auth_user}:{password}"
        if self.ssl_ca_location:
            conf["ssl.ca.location"] = self.ssl_ca_location
        return conf


class StackSettings(BaseModel):
    """The local stack ``tickflow infra`` runs (ignored when Kafka and registry are external)."""

    #: Data, logs and pid files of the local broker(s) and registry; survives ``down``/``up``.
    state_dir: Path = REPO_ROOT / ".tickflow" / "state"
    #: Downloaded Java artifacts (outside the repository).
    cache_dir: Path = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "tickflow"
    kafka_port: int = 9092
    registry_port: int = 8081
    brokers: Literal[1, 3] = 1
    kafka_heap: str = "512m"
    registry_heap: str = "384m"


class Settings(BaseSettings):
    """All of tickflow's configuration."""

    model_config = SettingsConfigDict(env_prefix="TICKFLOW_", env_nested_delimiter="__", extra="forbid")

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    registry: RegistrySettings = Field(default_factory=RegistrySettings)
    stack: StackSettings = Field(default_factory=StackSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Environment beats explicit file values: a deployment overrides one setting by variable.
        return env_settings, init_settings, file_secret_settings


def load_settings(path: str | Path | None = None) -> Settings:
    """Settings from ``path`` (or ``$TICKFLOW_CONFIG``) overlaid by ``TICKFLOW_*`` variables."""
    import yaml
    from pydantic import ValidationError

    path = path or os.environ.get("TICKFLOW_CONFIG")
    data: dict[str, Any] = {}
    if path:
        try:
            data = yaml.safe_load(Path(path).read_text()) or {}
        except FileNotFoundError as exc:
            raise ConfigError(f"config file not found: {path}") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"config file {path} must hold a mapping at the top level")
    try:
        return Settings(**data)
    except ValidationError as exc:
        raise ConfigError(f"invalid configuration{f' in {path}' if path else ''}:\n{exc}") from exc
