"""Exchange simulator: venues' real wire protocols on 127.0.0.1, over recorded or synthetic markets.

- ``simulator.market``: the seeded, venue-neutral synthetic market (books, trades, candles).
- ``simulator.binance``: ``BinanceReplay`` (recordings) and ``BinanceSynthetic`` (spot / USD-M).
- ``simulator.coinbase``: ``CoinbaseSynthetic`` (Advanced Trade market data).
- ``simulator.faults``: ``Faults`` to inject and ``SimStats`` recording what was injected.
"""
