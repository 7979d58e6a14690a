"""How a simulated venue runs its trading API: accounts, port, fees, matching cadence."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from simulator.trading.accounts import Account, Accounts


@dataclass
class TradingConfig:
    """Pass as ``trading=`` to ``BinanceSynthetic`` / ``CoinbaseSynthetic`` to serve order endpoints
    on ``host:port`` (0: ephemeral); without accounts every private request is an auth error."""

    accounts: Accounts | list[Account] = field(default_factory=list)
    host: str = "127.0.0.1"
    port: int = 0
    #: Seconds between two passes of the resting-order matcher.
    match_interval: float = 0.05
    taker_fee: Decimal = Decimal("0.001")
    maker_fee: Decimal = Decimal(0)
    #: USD-M: margin = notional / leverage.
    leverage: int = 20
    #: Binance order-rate limits per account, (count, seconds) pairs; None: the venue's defaults
    #: (spot 100 per 10 s and 200000 per day, USD-M 300 per 10 s and 1200 per minute).
    order_limits: tuple[tuple[int, int], ...] | None = None
    #: Coinbase private endpoints: requests per second per account before 429.
    private_rate: int = 30

    def registry(self) -> Accounts:
        return self.accounts if isinstance(self.accounts, Accounts) else Accounts(list(self.accounts))
