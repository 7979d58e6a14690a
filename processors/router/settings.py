"""The router's settings: a YAML file (``tickflow router --config``) overlaid by
``TICKFLOW_ROUTER__*`` variables.

Credentials are never values in the file: an account names the environment variables or the
secret files (a Kubernetes secret mount, a Docker secret) that hold its API key and secret.
"""

from __future__ import annotations

import os
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from tickflow import topics
from tickflow.errors import ConfigError
from tickflow.logs import register_secrets


class SecretRef(BaseModel):
    """Where one secret is: an environment variable or a file (exactly one)."""

    model_config = {"extra": "forbid"}

    env: str | None = None
    file: Path | None = None

    @model_validator(mode="after")
    def _one_source(self) -> SecretRef:
        if (self.env is None) == (self.file is None):
            raise ValueError("a secret needs exactly one of env (a variable name) and file (a path)")
        return self

    def read(self, what: str) -> str:
        """The secret's value, from now on hidden in every log line. The error names where it was
        looked for, never a value."""
        if self.env is not None:
            value = os.environ.get(self.env, "")
            if not value:
                raise ConfigError(f"{what}: the environment variable {self.env} is not set")
        else:
            assert self.file is not None
            try:
                value = self.file.read_text().strip()
            except OSError as exc:
                raise ConfigError(f"{what}: cannot read the secret file {self.file} ({exc.strerror})") from None
        register_secrets(value, *value.splitlines())  # a PEM key: each of its lines too
        return value


class VenueCredentials(BaseModel):
    """An account's API credentials at one venue.

    ``key_type``: ``hmac`` (Binance HMAC-SHA-256: ``secret`` is the secret key), ``ed25519``
    (Binance Ed25519: ``secret`` is the PEM private key), ``es256`` (Coinbase CDP key: ``api_key``
    is the key name ``organizations/.../apiKeys/...``, ``secret`` the EC PEM private key)."""

    model_config = {"extra": "forbid"}

    api_key: SecretRef
    secret: SecretRef
    key_type: Literal["hmac", "ed25519", "es256"] = "hmac"


class AccountLimits(BaseModel):
    """Per-account pre-trade limits (None: no limit)."""

    model_config = {"extra": "forbid"}

    #: Largest notional (price x size, in the quote asset) of one order.
    max_order_notional: Decimal | None = None
    #: Open orders at once, over every venue and symbol of the account.
    max_open_orders: int | None = None
    #: Largest absolute position per symbol, in base units, counting what open orders would add.
    max_position: Decimal | None = None
    #: Commands per second the account may send (a burst of one second's worth is allowed).
    commands_per_second: float | None = None
    #: A limit price may be at most this fraction away from the opposite best price
    #: (0.05: a buy at most 5 % above the best ask, a sell at most 5 % below the best bid).
    price_band: Decimal | None = Decimal("0.05")


class AccountSettings(BaseModel):
    model_config = {"extra": "forbid"}

    venues: dict[str, VenueCredentials]
    limits: AccountLimits = Field(default_factory=AccountLimits)


class VenueEndpoint(BaseModel):
    """Where a venue's trading API is (default: its public address) and how to talk to it."""

    model_config = {"extra": "forbid"}

    rest_url: str | None = None
    #: The private stream's WebSocket host (fills, order updates, balances); default: the venue's.
    user_stream_url: str | None = None
    #: Where its instrument rules are read (exchangeInfo, products); default: ``rest_url``.
    market_data_url: str | None = None
    recv_window_ms: int = Field(5000, ge=100, le=60000)
    connect_timeout: float = 2.0
    read_timeout: float = 3.0
    #: The account's order-rate limit as [orders, seconds] where it is not the venue's default
    #: (Binance spot: 100 per 10 s; raised for VIP tiers).
    order_limit: tuple[int, float] | None = None
    #: The IP's request weight per minute where it is not the venue's default (Binance spot: 6000).
    weight_per_minute: int | None = None


class RouterSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TICKFLOW_ROUTER__", env_nested_delimiter="__", extra="forbid")

    #: The consumer group of the command topic.
    group_id: str = "tickflow-router"
    #: This router's identity: its static group membership (a restart takes its partitions back
    #: at once) and its transactional id (a restart fences the previous incarnation).
    instance_id: str = "router-0"
    accounts: dict[str, AccountSettings] = Field(default_factory=dict)
    venues: dict[str, VenueEndpoint] = Field(default_factory=dict)
    commands_topic: str = topics.ORDER_COMMANDS
    events_topic: str = topics.ORDER_EVENTS
    state_topic: str = topics.ORDER_STATE
    control_topic: str = topics.ORDER_CONTROL
    balances_topic: str = topics.BALANCES
    #: Follow each account's private stream (fills, venue-side cancels and expiries, balances).
    user_streams: bool = True
    #: Best bid/offer for the price band: the order-book agent's validated tops by default.
    bbo_topic: str = topics.BOOK_BBO
    #: A best bid/offer older than this does not count (the band then rejects: "bbo_unavailable").
    bbo_max_age: float = 30.0
    #: Commands issued longer ago than this are refused ("stale_command") rather than executed late.
    max_command_age: float = 300.0
    #: Milliseconds between two transactions (events, state and offsets committed together).
    commit_interval_ms: int = Field(20, ge=1)
    #: Commands per partition the router may start beyond those its last transaction reserved.
    #: Each transaction reserves this many past the last command fetched (in the offsets'
    #: metadata), and a command beyond the reservation waits for the next one; after a crash the
    #: next router asks the venue only about the creates below the reservation, not about a whole
    #: backlog.
    reserve_ahead: int = Field(500, ge=1)
    #: Seconds between two reconciliations of open orders with the venues (fills, expiries).
    reconcile_interval: float = 5.0
    #: How long to keep asking the venue about an order whose create had an unknown outcome,
    #: beyond its recvWindow (after which the venue can no longer execute the lost request).
    resolve_margin: float = 2.0
    status_host: str = "127.0.0.1"
    status_port: int | None = None


def load_router_settings(path: str | Path | None = None, **overrides: Any) -> RouterSettings:
    import yaml
    from pydantic import ValidationError

    data: dict[str, Any] = {}
    if path:
        try:
            data = yaml.safe_load(Path(path).read_text()) or {}
        except FileNotFoundError:
            raise ConfigError(f"router config file not found: {path}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"router config file {path} is not valid YAML: {exc}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"router config file {path} must hold a mapping at the top level")
        data = data.get("router", data)
    try:
        return RouterSettings(**{**data, **overrides})
    except ValidationError as exc:
        raise ConfigError(f"invalid router configuration{f' in {path}' if path else ''}:\n{exc}") from None
