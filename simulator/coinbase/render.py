"""Synthetic market steps -> Coinbase Advanced Trade channel messages.

Every message is ``{"channel", "client_id", "timestamp", "sequence_num", "events"}``, where
``sequence_num`` counts the messages of one connection; so an item is stored as the envelope
head up to ``"sequence_num":`` (``Item.frame``) and the rest (``Item.text``), and a connection
joins them around its own counter. Decimals are plain (``"68926.3"``), timestamps RFC 3339 with
nanoseconds, sides ``bid``/``offer`` in level2 and the taker's ``BUY``/``SELL`` in trades.
"""

from __future__ import annotations

import json
import time

from simulator.candles import CandleSeries
from simulator.instruments import Instrument
from simulator.market import BID, Step, SyntheticMarket
from simulator.timeline import Item

CANDLE_MS = 300_000


def product_id(instrument: Instrument) -> str:
    return f"{instrument.base}-{instrument.quote}"


class Clock:
    """RFC 3339 with nanoseconds from milliseconds, the date part cached per second."""

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def __call__(self, ms: int) -> str:
        second, milli = divmod(ms, 1000)
        if second != self._second:
            self._second = second
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._prefix}.{milli:03d}000000Z"


def head(channel: str, timestamp: str) -> str:
    return f'{{"channel":"{channel}","client_id":"","timestamp":"{timestamp}","sequence_num":'


def tail(events: list[dict] | str) -> str:
    text = events if isinstance(events, str) else json.dumps(events, separators=(",", ":"))
    return f',"events":{text}}}'


class CoinbaseRenderer:
    def __init__(self, synthetic: SyntheticMarket) -> None:
        self.instruments = synthetic.instruments
        self.products = [product_id(i) for i in self.instruments]
        self.clock = Clock()
        self._price = [i.price.formatter(cache=True, plain=True) for i in self.instruments]
        self._size = [i.size.formatter(plain=True) for i in self.instruments]
        self.tops = [book.top() for book in synthetic.books]
        self.candles = [CandleSeries(CANDLE_MS, i.open_ticks, synthetic.start_ms) for i in self.instruments]
        #: Since the start (a stand-in for 24 h): open, low, high, volume in lots, last price.
        self.stats = [[i.open_ticks, i.open_ticks, i.open_ticks, 0, i.open_ticks] for i in self.instruments]

    def last_id(self, symbol: int) -> int:
        return 0  # Coinbase's level2 has no per-product ids: sequence_num is per connection

    def level(self, symbol: int, side: int, price: int, lots: int, timestamp: str) -> str:
        side_name = "bid" if side == BID else "offer"
        return (f'{{"side":"{side_name}","event_time":"{timestamp}","price_level":"{self._price[symbol](price)}",'
                f'"new_quantity":"{self._size[symbol](lots)}"}}')  # fmt: skip

    def l2_event(self, symbol: int, kind: str, levels: list[tuple[int, int, int]], timestamp: str) -> str:
        updates = ",".join(self.level(symbol, side, p, n, timestamp) for side, p, n in levels)
        return f'{{"type":"{kind}","product_id":"{self.products[symbol]}","updates":[{updates}]}}'

    def snapshot(self, symbol: int, bids: dict[int, int], asks: dict[int, int], ms: int) -> tuple[str, str]:
        """(head, tail) of a level2 snapshot message of a whole book."""
        timestamp = self.clock(ms)
        levels = [(BID, p, bids[p]) for p in sorted(bids, reverse=True)]
        levels += [(1, p, asks[p]) for p in sorted(asks)]
        return head("l2_data", timestamp), tail(f"[{self.l2_event(symbol, 'snapshot', levels, timestamp)}]")

    def ticker(self, symbol: int, kind: str) -> dict:
        open_, low, high, lots, last = self.stats[symbol]
        bid, bid_lots, ask, ask_lots = self.tops[symbol]
        price, size = self._price[symbol], self._size[symbol]
        change = (last - open_) * 100 / open_
        return {"type": kind, "tickers": [{
            "type": "ticker", "product_id": self.products[symbol], "price": price(last),
            "volume_24_h": size(lots), "low_24_h": price(low), "high_24_h": price(high), "low_52_w": price(low),
            "high_52_w": price(high), "price_percent_chg_24_h": f"{change:.8f}", "best_bid": price(bid),
            "best_bid_quantity": size(bid_lots), "best_ask": price(ask), "best_ask_quantity": size(ask_lots),
        }]}  # fmt: skip

    def candle(self, symbol: int, kind: str) -> dict:
        c = self.candles[symbol].current
        price, size = self._price[symbol], self._size[symbol]
        return {"type": kind, "candles": [{
            "start": str(c.open_ms // 1000), "high": price(c.high), "low": price(c.low), "open": price(c.open),
            "close": price(c.close), "volume": size(c.lots), "product_id": self.products[symbol],
        }]}  # fmt: skip

    def __call__(self, step: Step, at: float) -> list[Item]:
        s, product = step.symbol, self.products[step.symbol]
        timestamp = self.clock(step.ts_ms)
        items = []
        merged = {(side, p): lots for side, p, lots in step.changes}
        changes = [(side, p, lots) for (side, p), lots in merged.items()]
        if step.top is not None:
            self.tops[s] = step.top
        if changes:
            text = tail(f"[{self.l2_event(s, 'update', changes, timestamp)}]")
            items.append(Item(at, f"level2:{product}", text, head("l2_data", timestamp), "", product, s,
                              changes=changes))  # fmt: skip
        if step.fills:
            price, size = self._price[s], self._size[s]
            trades = []
            stats = self.stats[s]
            self.candles[s].roll(step.ts_ms)
            for fill in step.fills:
                side = "BUY" if fill.taker_buy else "SELL"
                for n, lots in enumerate(fill.sizes):
                    trades.append({"trade_id": str(fill.first_id + n), "product_id": product,
                                   "price": price(fill.price), "size": size(lots), "side": side,
                                   "time": timestamp})  # fmt: skip
                stats[1], stats[2] = min(stats[1], fill.price), max(stats[2], fill.price)
                stats[3] += fill.lots
                stats[4] = fill.price
                self.candles[s].add(fill)
            events = tail([{"type": "update", "trades": trades}])
            items.append(Item(at, f"market_trades:{product}", events, head("market_trades", timestamp), "", product))
            items.append(Item(at, f"ticker:{product}", tail([self.ticker(s, "update")]), head("ticker", timestamp),
                              "", product))  # fmt: skip
            items.append(Item(at, f"candles:{product}", tail([self.candle(s, "update")]), head("candles", timestamp),
                              "", product))  # fmt: skip
        return items
