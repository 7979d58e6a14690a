"""cryptofeed's Binance FeedHandler into Kafka, pointed at the tickflow simulator (bench helper).

Not part of tickflow and never imported by it: ``bench/vs_cryptofeed.py`` runs this file with the
Python of a separate virtual environment that has cryptofeed installed
(``bench/setup_cryptofeed.sh`` creates it), so cryptofeed never becomes a tickflow dependency.

What it runs: one ``FeedHandler`` with cryptofeed's ``Binance`` feed, channels L2_BOOK (depth diffs
at 100 ms), TRADES (aggTrade), TICKER (bookTicker) and CANDLES (kline_1m), and for each channel
cryptofeed's own Kafka callback (``cryptofeed.backends.kafka``: ``BookKafka``, ``TradeKafka``,
``TickerKafka``, ``CandlesKafka``) with their defaults: JSON values, one topic per channel and
symbol (``book-BINANCE-BTC-USDT``), aiokafka's default producer settings (acks=1, no compression).
Two settings differ from cryptofeed's defaults, both so the two pipelines do the same work:
``candle_closed_only=False`` (every kline frame becomes a candle, as in tickflow; the default
publishes closed candles only) and the FeedHandler's log goes to a file under /tmp.

What is patched, in this process only, to point cryptofeed at the simulator (cryptofeed
hard-codes Binance's public endpoints):

* ``Binance.websocket_endpoints`` and ``Binance.rest_endpoints``: the simulator's address instead
  of ``wss://stream.binance.com:9443`` and ``https://api.binance.com`` (same paths: ``/stream``,
  ``/api/v3/exchangeInfo``, ``/api/v3/depth``).
* ``WSAsyncConn.__init__``: cryptofeed refuses any WebSocket address that does not start with
  ``wss://`` (``ValueError: Invalid address, must be a wss address``); the simulator speaks plain
  ``ws://`` on loopback, so the address is checked as ``wss://`` and then connected as ``ws://``.
* Symbols: cryptofeed loads them from ``/api/v3/exchangeInfo`` when the feed is built. If the
  simulator serves it, that is used unchanged; with ``--symbol-map`` (for a simulator that does
  not serve it, e.g. the recording replay) the symbol table is filled from the given
  BASE/QUOTE pairs instead.

Usage (normally through ``bench/vs_cryptofeed.py``)::

    /work/.bench-venvs/cryptofeed/bin/python bench/cryptofeed_runner.py \\
        --url 127.0.0.1:18765 --bootstrap 127.0.0.1:19492 --symbols NKNUSDT,BLZETH

Runs until SIGTERM/SIGINT (cryptofeed's own signal handling: the backends send what they hold).
"""

from __future__ import annotations

import argparse
import asyncio
import sys


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="simulator host:port (plain ws/http)")
    parser.add_argument("--bootstrap", required=True, help="Kafka bootstrap servers")
    parser.add_argument("--symbols", required=True, help="Binance symbols, comma-separated (BTCUSDT,...)")
    parser.add_argument("--symbol-map", default="", help="BASE/QUOTE pairs, comma-separated, if no exchangeInfo")
    parser.add_argument("--log", default="/tmp/cryptofeed-bench.log", help="cryptofeed's log file")
    args = parser.parse_args()

    from cryptofeed import FeedHandler
    from cryptofeed import connection as cf_connection
    from cryptofeed.backends.kafka import BookKafka, CandlesKafka, TickerKafka, TradeKafka
    from cryptofeed.defines import BINANCE, CANDLES, L2_BOOK, SPOT, TICKER, TRADES
    from cryptofeed.exchanges import Binance
    from cryptofeed.symbols import Symbols

    # --- point cryptofeed at the simulator (this process only) ---------------------------------
    Binance.websocket_endpoints = [cf_connection.WebsocketEndpoint(f"ws://{args.url}")]
    Binance.rest_endpoints = [
        cf_connection.RestEndpoint(
            f"http://{args.url}",
            routes=cf_connection.Routes("/api/v3/exchangeInfo", l2book="/api/v3/depth?symbol={}&limit={}"),
        )
    ]
    original_init = cf_connection.WSAsyncConn.__init__

    def plain_ws_init(self, address: str, conn_id: str, authentication=None, subscription=None, **kwargs) -> None:  # type: ignore[no-untyped-def]
        original_init(self, "wss://" + address.removeprefix("ws://"), conn_id, authentication, subscription, **kwargs)
        self.address = address

    cf_connection.WSAsyncConn.__init__ = plain_ws_init  # type: ignore[method-assign]

    venue_symbols = [s.strip().upper() for s in args.symbols.split(",") if s.strip()]
    if args.symbol_map:
        pairs = [p.split("/") for p in args.symbol_map.split(",")]
        mapping = {f"{base}-{quote}": f"{base}{quote}" for base, quote in pairs}
        info = {"tick_size": {}, "instrument_type": dict.fromkeys(mapping, SPOT)}
        Symbols.set(BINANCE, mapping, info)
    exchange_to_std = {v: k for k, v in Binance.symbol_mapping().items()}
    missing = [s for s in venue_symbols if s not in exchange_to_std]
    if missing:
        print(f"cryptofeed_runner: symbols unknown to the simulator: {missing}", file=sys.stderr)
        return 2
    std_symbols = [exchange_to_std[s] for s in venue_symbols]

    kafka = {"bootstrap_servers": args.bootstrap}
    handler = FeedHandler(config={"uvloop": True, "log": {"filename": args.log, "level": "WARNING"}})
    handler.add_feed(
        Binance(
            symbols=std_symbols,
            channels=[L2_BOOK, TRADES, TICKER, CANDLES],
            candle_closed_only=False,
            callbacks={
                L2_BOOK: BookKafka(**kafka),
                TRADES: TradeKafka(**kafka),
                TICKER: TickerKafka(**kafka),
                CANDLES: CandlesKafka(**kafka),
            },
        )
    )
    # FeedHandler.run() calls asyncio.get_event_loop(), which uvloop >= 0.21 refuses without a current
    # loop ("There is no current event loop"): set one (a uvloop loop, the policy FeedHandler chose).
    asyncio.set_event_loop(asyncio.new_event_loop())
    print("cryptofeed_runner: running", ", ".join(std_symbols), file=sys.stderr, flush=True)
    handler.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
