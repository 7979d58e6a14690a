"""The simulator's trading side: a venue-neutral matching engine with accounts and balances
(``engine``), accounts and their API keys (``accounts``), and the aiohttp server base every venue's
order API runs on (``http``). The venues' own endpoints live in ``simulator.binance.trading`` and
``simulator.coinbase.trading``."""

from simulator.trading.accounts import Account, Accounts, BinanceKey, CoinbaseKey, accounts_from_dict, load_accounts
from simulator.trading.config import TradingConfig
from simulator.trading.engine import Engine, Fill, Order, Rejection

__all__ = [
    "Account", "Accounts", "BinanceKey", "CoinbaseKey", "Engine", "Fill", "Order", "Rejection", "TradingConfig",
    "accounts_from_dict", "load_accounts",
]  # fmt: skip
