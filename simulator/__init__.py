"""Exchange simulator: venues' real wire protocols on 127.0.0.1, over recorded or synthetic markets.

- ``simulator.market``: the seeded, venue-neutral synthetic market (books, trades, candles).
- ``simulator.binance``: ``BinanceReplay`` (recordings) and ``BinanceSynthetic`` (spot / USD-M).
- ``simulator.coinbase``: ``CoinbaseSynthetic`` (Advanced Trade market data).
- ``simulator.faults``: ``Faults`` to inject and ``SimStats`` recording what was injected.
- ``simulator.trading``: the trading side (``trading=TradingConfig(...)`` on a synthetic venue): a
  matching engine with accounts over the synthetic book, served by each venue's private order API
  (``simulator.binance.trading``, ``simulator.coinbase.trading``) on its own port, ``trading_url``;
  ``GET /_sim/orders`` and ``/_sim/stats`` there for tests in other processes.
"""
