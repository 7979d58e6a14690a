"""Synthetic market steps -> Binance stream payloads, with Binance's update ids.

Spot numbers each symbol's depth updates on its own (``U`` = previous ``u`` + 1). USD-M numbers
all symbols from one counter, so one symbol's ids jump and continuity is ``pu`` = previous
``u``. Spot pads every decimal to 8 places; USD-M uses the symbol's own precision. The texts are
built directly (no escaping is ever needed), as this is the full-speed pre-rendering path.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from simulator.binance.markets import BinanceMarket
from simulator.candles import Candle, CandleSeries
from simulator.instruments import Instrument
from simulator.market import BID, Fill, Step, SyntheticMarket
from simulator.timeline import Item

#: Formats grid units as the venue's decimal text.
Fmt = Callable[[int], str]
KLINE_MS = 60_000
#: Binance pushes the current kline every 2 s.
KLINE_PUSH_MS = 2000
#: An event's ``E`` is 1-3 ms after the market time it happens at (``__call__``): 2 on average.
MEAN_EVENT_LAG_MS = 2.0


def venue_symbol(instrument: Instrument) -> str:
    return f"{instrument.base}{instrument.quote}"


class BinanceRenderer:
    def __init__(self, market: BinanceMarket, synthetic: SyntheticMarket, seed: int) -> None:
        self.market = market
        self.instruments = synthetic.instruments
        self.symbols = [venue_symbol(i) for i in self.instruments]
        self.lower = [s.lower() for s in self.symbols]
        ids = random.Random(seed ^ 0x5EED)
        #: The last depth update id of each symbol (spot: its own counter; USD-M: the shared one).
        self.last_ids = [ids.randrange(10**8, 10**10) for _ in self.instruments]
        self._global = max(self.last_ids) if market.usdm else 0
        self.candles = [CandleSeries(KLINE_MS, i.open_ticks, synthetic.start_ms) for i in self.instruments]
        self._kline_pushed = [0] * len(self.instruments)
        digits = None if market.usdm else 8
        self._price = [i.price.formatter(digits, cache=True) for i in self.instruments]
        self._size = [i.size.formatter(digits) for i in self.instruments]

    def last_id(self, symbol: int) -> int:
        return self.last_ids[symbol]

    def __call__(self, step: Step, at: float) -> list[Item]:
        s = step.symbol
        low, sym = self.lower[s], self.symbols[s]
        price, size = self._price[s], self._size[s]
        usdm = self.market.usdm
        ts = step.ts_ms
        event_ms = ts + 1 + step.index % 3  # the event leaves the engine a moment after it happens (MEAN_EVENT_LAG_MS)
        items: list[Item] = []
        merged = {(side, p): lots for side, p, lots in step.changes}  # one entry per level, last wins
        changes = [(side, p, lots) for (side, p), lots in merged.items()]
        first = 0
        if changes:
            bids = ",".join(f'["{price(p)}","{size(n)}"]' for side, p, n in changes if side == BID)
            asks = ",".join(f'["{price(p)}","{size(n)}"]' for side, p, n in changes if side != BID)
            count = len(changes) + step.index % 3  # more engine updates than visible levels, as at Binance
            previous = self.last_ids[s]
            if usdm:
                first = self._global + 1
                self._global += count
                last = self._global
                data = (f'{{"e":"depthUpdate","E":{event_ms},"T":{ts},"s":"{sym}","U":{first},"u":{last},'
                        f'"pu":{previous},"b":[{bids}],"a":[{asks}]}}')  # fmt: skip
            else:
                first, last = previous + 1, previous + count
                data = (f'{{"e":"depthUpdate","E":{event_ms},"s":"{sym}","U":{first},"u":{last},'
                        f'"b":[{bids}],"a":[{asks}]}}')  # fmt: skip
            self.last_ids[s] = last
            items.append(self._item(at, f"{low}@depth", f"{low}@depth@100ms", data, sym, s, first, last, changes))
        for fill in step.fills:
            items.extend(self._trades(at, low, sym, fill, ts, event_ms, price, size))
        if step.top is not None:
            bid, bid_lots, ask, ask_lots = step.top
            u = self.last_ids[s]
            quote = f'"b":"{price(bid)}","B":"{size(bid_lots)}","a":"{price(ask)}","A":"{size(ask_lots)}"'
            data = (f'{{"e":"bookTicker","u":{u},"s":"{sym}",{quote},"T":{ts},"E":{event_ms}}}' if usdm
                    else f'{{"u":{u},"s":"{sym}",{quote}}}')  # fmt: skip
            items.append(self._item(at, f"{low}@bookTicker", f"{low}@bookTicker", data, sym))
        items.extend(self._klines(at, s, step, event_ms))
        return items

    @staticmethod
    def _item(at: float, key: str, name: str, data: str, sym: str, symbol: int = -1, first: int = 0,
              last: int = 0, changes: list[tuple[int, int, int]] | None = None) -> Item:  # fmt: skip
        frame = f'{{"stream":"{name}","data":{data}}}'
        return Item(at, key, "", frame, name, sym, symbol, first, last, changes)

    def _trades(
        self, at: float, low: str, sym: str, fill: Fill, ts: int, event_ms: int, price: Fmt, size: Fmt
    ) -> list[Item]:
        p = price(fill.price)
        maker = "false" if fill.taker_buy else "true"  # m: the buyer is the maker
        q = size(fill.lots)
        if self.market.usdm:
            agg = (f'{{"e":"aggTrade","E":{event_ms},"a":{fill.agg_id},"s":"{sym}","p":"{p}","q":"{q}",'
                   f'"f":{fill.first_id},"l":{fill.last_id},"T":{ts},"m":{maker}}}')  # fmt: skip
        else:
            agg = (f'{{"e":"aggTrade","E":{event_ms},"s":"{sym}","a":{fill.agg_id},"p":"{p}","q":"{q}",'
                   f'"f":{fill.first_id},"l":{fill.last_id},"T":{ts},"m":{maker},"M":true}}')  # fmt: skip
        items = [self._item(at, f"{low}@aggTrade", f"{low}@aggTrade", agg, sym)]
        if not self.market.usdm:
            for n, lots in enumerate(fill.sizes):
                trade = (f'{{"e":"trade","E":{event_ms},"s":"{sym}","t":{fill.first_id + n},"p":"{p}",'
                         f'"q":"{size(lots)}","T":{ts},"m":{maker},"M":true}}')  # fmt: skip
                items.append(self._item(at, f"{low}@trade", f"{low}@trade", trade, sym))
        return items

    def _klines(self, at: float, s: int, step: Step, event_ms: int) -> list[Item]:
        series = self.candles[s]
        items = []
        closed = series.roll(step.ts_ms)
        if closed is not None:
            items.append(self._kline(at, s, closed, event_ms, final=True))
        for fill in step.fills:
            series.add(fill)
        if closed is not None or step.ts_ms - self._kline_pushed[s] >= KLINE_PUSH_MS:
            self._kline_pushed[s] = step.ts_ms
            items.append(self._kline(at, s, series.current, event_ms, final=False))
        return items

    def _kline(self, at: float, s: int, c: Candle, event_ms: int, final: bool) -> Item:
        instrument, sym, low = self.instruments[s], self.symbols[s], self.lower[s]
        price, size = self._price[s], self._size[s]
        places = 8 if not self.market.usdm else instrument.price.decimals

        def quote(notional: int) -> str:
            value = instrument.price.value(notional) * instrument.step_size
            return f"{value:.{places}f}"

        k = (f'{{"t":{c.open_ms},"T":{c.close_ms},"s":"{sym}","i":"1m","f":{c.first_id},"L":{c.last_id},'
             f'"o":"{price(c.open)}","c":"{price(c.close)}","h":"{price(c.high)}","l":"{price(c.low)}",'
             f'"v":"{size(c.lots)}","n":{c.trades},"x":{"true" if final else "false"},"q":"{quote(c.notional)}",'
             f'"V":"{size(c.taker_buy_lots)}","Q":"{quote(c.taker_buy_notional)}","B":"0"}}')  # fmt: skip
        data = f'{{"e":"kline","E":{event_ms},"s":"{sym}","k":{k}}}'
        return self._item(at, f"{low}@kline_1m", f"{low}@kline_1m", data, sym)
