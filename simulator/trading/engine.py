"""A venue-neutral matching engine over the synthetic market: orders, fills, balances, positions.

Why against the *synthetic* book: the order router is tested against liquidity that moves like a
market's. An incoming order takes from the current opposite side of the simulated book (best level
first, up to its limit price / size; market orders walk the book). What rests (a GTC limit) is
filled later when the market moves through it: ``match_resting()`` (run every ~50 ms by the
trading server) fills resting buys priced at or above the best ask, and sells at or below the best
bid, at the order's own price (it was the maker), against the liquidity that crosses it.

The simulated market does not see these orders (its feed is generated on its own), so the engine
remembers how much of each displayed level it has consumed: a level's liquidity is taken once,
until the feed changes that level's size (then it counts as fresh liquidity). That is the simple
approach, and it keeps one displayed lot from filling two orders.

Everything is exact: prices are integer ticks and sizes integer lots of the instrument's grids,
money is ``Decimal``. Rejections raise ``Rejection`` with a venue-neutral ``reason``; each venue
adapter maps reasons to its own codes and messages.

Balances: spot locks quote (price * size, plus the taker fee when fees are charged in quote) for a
buy and base for a sell; fills move balances and charge a fee (``taker_fee`` / ``maker_fee``) in the
asset received, or in quote (``fee_in_quote``, as Coinbase does). Derivatives (USD-M) keep it
simple: the margin of an order is notional / ``leverage``, locked in the quote asset; a filled
order's margin stays locked as the position's; reducing a position releases margin pro rata and
books the realized PnL; ``reduce_only`` orders lock nothing and are rejected if they would increase
the position.
"""

from __future__ import annotations

import itertools
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal

from simulator.instruments import Instrument
from simulator.trading.accounts import Account, Accounts

BUY, SELL = "BUY", "SELL"
LIMIT, MARKET = "LIMIT", "MARKET"
GTC, IOC, FOK, POST_ONLY = "GTC", "IOC", "FOK", "POST_ONLY"
NEW, PARTIALLY_FILLED, FILLED = "NEW", "PARTIALLY_FILLED", "FILLED"
CANCELED, EXPIRED, REJECTED = "CANCELED", "EXPIRED", "REJECTED"
OPEN_STATUSES = frozenset({NEW, PARTIALLY_FILLED})

#: (bids, asks): price ticks -> size lots, of one symbol now.
BookSource = Callable[[str], tuple[dict[int, int], dict[int, int]]]
Listener = Callable[["Order", "Fill | None"], None]


class Rejection(Exception):
    """An order request the engine refuses; ``reason`` is one of the constants below."""

    UNKNOWN_SYMBOL = "UNKNOWN_SYMBOL"
    PRICE_FILTER = "PRICE_FILTER"
    LOT_SIZE = "LOT_SIZE"
    NOTIONAL = "NOTIONAL"
    INSUFFICIENT_BALANCE = "INSUFFICIENT_BALANCE"
    INSUFFICIENT_MARGIN = "INSUFFICIENT_MARGIN"
    DUPLICATE_CLIENT_ID = "DUPLICATE_CLIENT_ID"
    WOULD_TAKE = "WOULD_TAKE"  # post-only that would cross
    FOK_UNFILLED = "FOK_UNFILLED"  # only with ``fok_unfilled="reject"`` (USD-M)
    REDUCE_ONLY = "REDUCE_ONLY"
    NO_LIQUIDITY = "NO_LIQUIDITY"
    NOT_OPEN = "NOT_OPEN"  # cancel / amend of an order that is no longer open
    SIZE_NOT_DECREASED = "SIZE_NOT_DECREASED"
    NO_CHANGE = "NO_CHANGE"
    BELOW_FILLED = "BELOW_FILLED"

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass
class Fill:
    trade_id: int
    price: Decimal
    size: Decimal
    fee: Decimal
    fee_asset: str
    maker: bool
    time_ms: int

    @property
    def quote(self) -> Decimal:
        return self.price * self.size


@dataclass(eq=False)
class Order:
    id: int
    uuid: str
    client_id: str
    account: Account
    symbol: str
    side: str
    type: str
    tif: str
    price: Decimal | None  # None: a market order
    size: Decimal  # original size (for a quote-sized market order: what it bought)
    instrument: Instrument
    reduce_only: bool = False
    quote_size: Decimal | None = None  # a market order sized in quote
    executed: Decimal = Decimal(0)
    cumulative_quote: Decimal = Decimal(0)
    status: str = NEW
    created_ms: int = 0
    updated_ms: int = 0
    fills: list[Fill] = field(default_factory=list)
    #: What this order holds locked now (asset, amount), released as it fills or ends.
    locked_asset: str = ""
    locked: Decimal = Decimal(0)
    #: Every amend: (price, size, time ms).
    edits: list[tuple[Decimal | None, Decimal, int]] = field(default_factory=list)
    expiry_reason: str = ""

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    @property
    def remaining(self) -> Decimal:
        return self.size - self.executed

    @property
    def average_price(self) -> Decimal:
        return self.cumulative_quote / self.executed if self.executed else Decimal(0)

    @property
    def fees(self) -> Decimal:
        return sum((f.fee for f in self.fills), Decimal(0))

    def as_dict(self) -> dict:
        """A venue-neutral view (the debug endpoint's shape)."""
        return {
            "id": self.id, "uuid": self.uuid, "client_order_id": self.client_id, "account": self.account.name,
            "symbol": self.symbol, "side": self.side, "type": self.type, "time_in_force": self.tif,
            "price": None if self.price is None else str(self.price), "size": str(self.size),
            "executed": str(self.executed), "cumulative_quote": str(self.cumulative_quote), "status": self.status,
            "reduce_only": self.reduce_only, "created_ms": self.created_ms, "updated_ms": self.updated_ms,
            "fills": [{"trade_id": f.trade_id, "price": str(f.price), "size": str(f.size), "fee": str(f.fee),
                       "fee_asset": f.fee_asset, "maker": f.maker, "time_ms": f.time_ms} for f in self.fills],
        }  # fmt: skip


class Wallet:
    """One account's balances: asset -> [free, locked]."""

    def __init__(self, balances: dict[str, Decimal]) -> None:
        self.assets: dict[str, list[Decimal]] = {a: [Decimal(v), Decimal(0)] for a, v in balances.items()}

    def entry(self, asset: str) -> list[Decimal]:
        return self.assets.setdefault(asset, [Decimal(0), Decimal(0)])

    def free(self, asset: str) -> Decimal:
        return self.entry(asset)[0]

    def lock(self, asset: str, amount: Decimal) -> None:
        entry = self.entry(asset)
        if amount > entry[0]:
            raise Rejection(Rejection.INSUFFICIENT_BALANCE, f"{amount} {asset} > free {entry[0]}")
        entry[0] -= amount
        entry[1] += amount

    def unlock(self, asset: str, amount: Decimal) -> None:
        entry = self.entry(asset)
        entry[0] += amount
        entry[1] -= amount

    def spend_locked(self, asset: str, amount: Decimal) -> None:
        self.entry(asset)[1] -= amount

    def credit(self, asset: str, amount: Decimal) -> None:
        self.entry(asset)[0] += amount


@dataclass
class Position:
    """USD-M: signed size (long > 0), average entry price, margin held for it."""

    size: Decimal = Decimal(0)
    entry: Decimal = Decimal(0)
    margin: Decimal = Decimal(0)
    realized: Decimal = Decimal(0)


class Engine:
    def __init__(
        self,
        instruments: dict[str, Instrument],
        book: BookSource,
        accounts: Accounts,
        *,
        derivatives: bool = False,
        taker_fee: Decimal = Decimal("0.001"),
        maker_fee: Decimal = Decimal(0),
        fee_in_quote: bool = False,
        leverage: int = 20,
        fok_unfilled: str = "expire",
        seed: int = 0,
        first_order_id: int = 1,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.instruments = instruments
        self.book = book
        self.accounts = accounts
        self.derivatives = derivatives
        self.taker_fee = Decimal(taker_fee)
        self.maker_fee = Decimal(maker_fee)
        self.fee_in_quote = fee_in_quote or derivatives
        self.leverage = Decimal(leverage)
        self.fok_unfilled = fok_unfilled
        self.clock = clock
        #: Every accepted order, in the order of acceptance.
        self.orders: list[Order] = []
        self._by_id: dict[int, Order] = {}
        self._by_uuid: dict[str, Order] = {}
        self._by_client: dict[tuple[str, str], list[Order]] = {}
        self._open: dict[str, list[Order]] = {}  # symbol -> resting orders, in time priority
        self._ids = itertools.count(first_order_id)
        self._trade_ids = itertools.count(1)
        self._rng = random.Random(seed ^ 0x0DE5)
        self.wallets: dict[str, Wallet] = {a.name: Wallet(a.balances) for a in accounts}
        self.positions: dict[tuple[str, str], Position] = {}
        #: (symbol, side, price ticks) -> (displayed lots when last consumed, lots consumed).
        self._consumed: dict[tuple[str, int, int], tuple[int, int]] = {}
        self._listeners: list[Listener] = []

    # --- lookups --------------------------------------------------------------------------

    def get(self, order_id: int) -> Order | None:
        return self._by_id.get(order_id)

    def get_uuid(self, order_uuid: str) -> Order | None:
        return self._by_uuid.get(order_uuid)

    def by_client_id(self, account: Account | str, client_id: str) -> Order | None:
        """The latest order of ``account`` with ``client_id`` (ids may be reused once closed)."""
        found = self.all_by_client_id(account, client_id)
        return found[-1] if found else None

    def all_by_client_id(self, account: Account | str, client_id: str) -> list[Order]:
        name = account if isinstance(account, str) else account.name
        return list(self._by_client.get((name, client_id), []))

    def open_orders(self, account: Account, symbol: str | None = None) -> list[Order]:
        return [o for o in self.orders if o.account is account and o.is_open and symbol in (None, o.symbol)]

    def wallet(self, account: Account | str) -> Wallet:
        name = account if isinstance(account, str) else account.name
        return self.wallets.setdefault(name, Wallet({}))

    def balance(self, account: Account | str, asset: str) -> tuple[Decimal, Decimal]:
        """(free, locked) of ``asset``."""
        free, locked = self.wallet(account).entry(asset)
        return free, locked

    def position(self, account: Account | str, symbol: str) -> Position:
        name = account if isinstance(account, str) else account.name
        return self.positions.setdefault((name, symbol), Position())

    def add_listener(self, callback: Listener) -> None:
        """``callback(order, fill_or_None)`` on every order state change (for private user streams)."""
        self._listeners.append(callback)

    def _notify(self, order: Order, fill: Fill | None = None) -> None:
        for callback in self._listeners:
            callback(order, fill)

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    # --- validation -------------------------------------------------------------------------

    def instrument(self, symbol: str) -> Instrument:
        instrument = self.instruments.get(symbol)
        if instrument is None:
            raise Rejection(Rejection.UNKNOWN_SYMBOL, symbol)
        return instrument

    @staticmethod
    def ticks(instrument: Instrument, price: Decimal) -> int:
        """``price`` in ticks; PRICE_FILTER unless it is a positive multiple of the tick size."""
        if price <= 0 or price % instrument.tick_size != 0 or price > Decimal(1_000_000):
            raise Rejection(Rejection.PRICE_FILTER, f"price {price} vs tick {instrument.tick_size}")
        return int(price / instrument.tick_size)

    @staticmethod
    def lots(instrument: Instrument, size: Decimal) -> int:
        if size <= 0 or size % instrument.step_size != 0 or size > Decimal(9_000_000):
            raise Rejection(Rejection.LOT_SIZE, f"size {size} vs step {instrument.step_size}")
        lots = int(size / instrument.step_size)
        if lots < instrument.min_size_lots:
            raise Rejection(Rejection.LOT_SIZE, f"size {size} below the minimum")
        return lots

    # --- liquidity ------------------------------------------------------------------------

    def _available(self, symbol: str, side: int, price: int, displayed: int) -> int:
        seen = self._consumed.get((symbol, side, price))
        if seen is None or seen[0] != displayed:  # the feed changed the level: fresh liquidity
            return displayed
        return max(0, displayed - seen[1])

    def _consume(self, symbol: str, side: int, price: int, displayed: int, lots: int) -> None:
        key = (symbol, side, price)
        seen = self._consumed.get(key)
        taken = seen[1] if seen is not None and seen[0] == displayed else 0
        self._consumed[key] = (displayed, taken + lots)

    def _crossing(self, order: Order, limit: int | None) -> list[tuple[int, int, int]]:
        """The opposite levels ``order`` may take, best first: (price ticks, available lots, displayed)."""
        bids, asks = self.book(order.symbol)
        levels, side = (asks, 1) if order.side == BUY else (bids, 0)
        prices = sorted(levels) if order.side == BUY else sorted(levels, reverse=True)
        out = []
        for price in prices:
            if limit is not None and (price > limit if order.side == BUY else price < limit):
                break
            available = self._available(order.symbol, side, price, levels[price])
            if available > 0:
                out.append((price, available, levels[price]))
        return out

    def _plan(self, order: Order, limit: int | None, lots: int, quote: Decimal | None) -> list[tuple[int, int, int]]:
        """Fills (price ticks, lots, displayed) an incoming order would get now, without taking them."""
        grid = order.instrument
        plan = []
        for price, available, displayed in self._crossing(order, limit):
            if quote is not None:
                budget = quote - sum(grid.price.value(p) * grid.size.value(n) for p, n, _ in plan)
                take = min(available, int(budget / (grid.price.value(price) * grid.step_size)))
            else:
                take = min(available, lots - sum(n for _, n, _ in plan))
            if take <= 0:
                break
            plan.append((price, take, displayed))
        return plan

    # --- placing ----------------------------------------------------------------------------

    def place(
        self,
        account: Account,
        symbol: str,
        side: str,
        type: str,
        *,
        size: Decimal | None = None,
        price: Decimal | None = None,
        tif: str = GTC,
        client_id: str | None = None,
        quote_size: Decimal | None = None,
        reduce_only: bool = False,
    ) -> Order:
        """Validate, match what crosses now, rest or expire the rest; the accepted order (or Rejection)."""
        instrument = self.instrument(symbol)
        client_id = client_id or self._client_id()
        if any(o.is_open for o in self._by_client.get((account.name, client_id), [])):
            raise Rejection(Rejection.DUPLICATE_CLIENT_ID, client_id)
        limit = self.ticks(instrument, price) if type == LIMIT and price is not None else None
        if type == LIMIT and limit is None:
            raise Rejection(Rejection.PRICE_FILTER, "a limit order needs a price")
        lots = self.lots(instrument, size) if size is not None else 0
        if quote_size is not None and (type != MARKET or size is not None):
            raise Rejection(Rejection.LOT_SIZE, "quote_size is for market orders without a size")
        if quote_size is None and size is None:
            raise Rejection(Rejection.LOT_SIZE, "no size")
        now = self.now_ms()
        order = Order(
            id=0, uuid="", client_id=client_id, account=account, symbol=symbol, side=side, type=type, tif=tif,
            price=price if type == LIMIT else None, size=Decimal(size) if size is not None else Decimal(0),
            instrument=instrument, reduce_only=reduce_only, quote_size=quote_size, created_ms=now, updated_ms=now,
        )  # fmt: skip
        plan = self._plan(order, limit, lots, quote_size)
        if type == MARKET and not plan:
            raise Rejection(Rejection.NO_LIQUIDITY, symbol)
        if quote_size is not None:
            lots = sum(n for _, n, _ in plan)
            if lots < instrument.min_size_lots:
                raise Rejection(Rejection.LOT_SIZE, "quote size buys less than the minimum size")
            order.size = instrument.size.value(lots)
        reference = instrument.price.value(limit if limit is not None else plan[0][0])
        notional = quote_size if quote_size is not None else reference * order.size
        if notional < instrument.min_notional and not reduce_only:
            raise Rejection(Rejection.NOTIONAL, f"{notional} < {instrument.min_notional}")
        if tif == POST_ONLY and plan:
            raise Rejection(Rejection.WOULD_TAKE, "post-only order would cross")
        filled_now = sum(n for _, n, _ in plan)
        if tif == FOK and filled_now < lots:
            if self.fok_unfilled == "reject":
                raise Rejection(Rejection.FOK_UNFILLED)
            plan = []
        if reduce_only:
            self._check_reduce_only(order)
        self._reserve(order, plan)
        order.id = next(self._ids)
        order.uuid = str(uuid.UUID(int=self._rng.getrandbits(128), version=4))
        self._accept(order)
        self._notify(order)
        for price_ticks, take, displayed in plan:
            self._consume(symbol, 1 if side == BUY else 0, price_ticks, displayed, take)
            self._fill(order, instrument.price.value(price_ticks), instrument.size.value(take), maker=False)
        if order.is_open and (type == MARKET or tif in (IOC, FOK)):
            self._close(order, EXPIRED)
            order.expiry_reason = "INSUFFICIENT_LIQUIDITY" if type == MARKET else ""
        elif order.is_open:
            self._open.setdefault(symbol, []).append(order)
        return order

    def _client_id(self) -> str:
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
        return "".join(self._rng.choice(alphabet) for _ in range(22))

    def _accept(self, order: Order) -> None:
        self.orders.append(order)
        self._by_id[order.id] = order
        self._by_uuid[order.uuid] = order
        self._by_client.setdefault((order.account.name, order.client_id), []).append(order)

    def _check_reduce_only(self, order: Order) -> None:
        if not self.derivatives:
            raise Rejection(Rejection.REDUCE_ONLY, "reduce-only is for derivatives")
        position = self.position(order.account, order.symbol).size
        signed = order.size if order.side == BUY else -order.size
        if position == 0 or (position > 0) == (signed > 0) or abs(signed) > abs(position):
            raise Rejection(Rejection.REDUCE_ONLY, f"position {position}, order {signed}")

    def _hold(self, order: Order, plan: list[tuple[int, int, int]]) -> tuple[str, Decimal]:
        """What placing ``order`` must lock: (asset, amount)."""
        grid = order.instrument
        if order.reduce_only:
            return grid.quote, Decimal(0)
        if order.price is not None:
            notional = order.price * order.remaining
        else:  # a market order: what its planned fills cost
            notional = sum((grid.price.value(p) * grid.size.value(n) for p, n, _ in plan), Decimal(0))
        if self.derivatives:
            return grid.quote, notional / self.leverage
        if order.side == BUY:
            fee = notional * self.taker_fee if self.fee_in_quote else Decimal(0)
            return grid.quote, notional + fee
        return grid.base, order.remaining

    def _reserve(self, order: Order, plan: list[tuple[int, int, int]]) -> None:
        asset, amount = self._hold(order, plan)
        try:
            self.wallet(order.account).lock(asset, amount)
        except Rejection as exc:
            reason = Rejection.INSUFFICIENT_MARGIN if self.derivatives else Rejection.INSUFFICIENT_BALANCE
            raise Rejection(reason, exc.detail) from None
        order.locked_asset, order.locked = asset, amount

    # --- fills ------------------------------------------------------------------------------

    def _fill(self, order: Order, price: Decimal, size: Decimal, maker: bool) -> Fill:
        grid = order.instrument
        wallet = self.wallet(order.account)
        rate = self.maker_fee if maker else self.taker_fee
        quote = price * size
        now = self.now_ms()
        if self.derivatives:
            fee, fee_asset = quote * rate, grid.quote
            self._derivative_fill(order, price, size, fee)
        elif order.side == BUY:
            in_quote = self.fee_in_quote
            fee = quote * rate if in_quote else size * rate
            fee_asset = grid.quote if in_quote else grid.base
            cost = quote + (fee if in_quote else 0)
            release = min(order.locked, cost if order.price is None else order.price * size * (1 + (
                self.taker_fee if in_quote else 0)))  # fmt: skip
            wallet.spend_locked(grid.quote, release)
            order.locked -= release
            wallet.credit(grid.quote, release - cost)  # a better price than the limit refunds the difference
            wallet.credit(grid.base, size - (0 if in_quote else fee))
        else:
            fee = quote * rate
            fee_asset = grid.quote
            wallet.spend_locked(grid.base, size)
            order.locked -= size
            wallet.credit(grid.quote, quote - fee)
        fill = Fill(next(self._trade_ids), price, size, fee, fee_asset, maker, now)
        order.fills.append(fill)
        order.executed += size
        order.cumulative_quote += quote
        order.updated_ms = now
        order.status = FILLED if order.executed >= order.size else PARTIALLY_FILLED
        if order.status == FILLED:
            self._release(order)
            self._unrest(order)
        self._notify(order, fill)
        return fill

    def _derivative_fill(self, order: Order, price: Decimal, size: Decimal, fee: Decimal) -> None:
        wallet = self.wallet(order.account)
        grid = order.instrument
        position = self.position(order.account, order.symbol)
        signed = size if order.side == BUY else -size
        # The order's margin for this part moves to the position (reduce-only orders hold none).
        margin = order.locked * size / order.remaining if order.remaining and not order.reduce_only else Decimal(0)
        order.locked -= margin
        wallet.credit(grid.quote, -fee)
        if position.size == 0 or (position.size > 0) == (signed > 0):
            total = position.size + signed
            position.entry = (position.entry * abs(position.size) + price * size) / abs(total)
            position.size = total
            position.margin += margin
            wallet.spend_locked(grid.quote, margin)
            return
        closing = min(abs(signed), abs(position.size))
        pnl = (price - position.entry) * closing * (1 if position.size > 0 else -1)
        released = position.margin * closing / abs(position.size)
        position.margin -= released
        position.realized += pnl
        wallet.credit(grid.quote, released + pnl)
        position.size += signed
        opened = abs(signed) - closing
        wallet.unlock(grid.quote, margin)  # the reducing part needed no margin
        if position.size == 0:
            position.entry = Decimal(0)
        elif opened:  # flipped: the opening part is a new position at this price
            position.entry = price
            needed = price * opened / self.leverage
            wallet.credit(grid.quote, -needed)
            position.margin += needed

    def _release(self, order: Order) -> None:
        if order.locked:
            self.wallet(order.account).unlock(order.locked_asset, order.locked)
            order.locked = Decimal(0)

    def _unrest(self, order: Order) -> None:
        resting = self._open.get(order.symbol)
        if resting and order in resting:
            resting.remove(order)

    def _close(self, order: Order, status: str) -> None:
        order.status = status
        order.updated_ms = self.now_ms()
        self._release(order)
        self._unrest(order)
        self._notify(order)

    # --- the resting side -------------------------------------------------------------------

    def match_resting(self) -> int:
        """Fill resting orders the market has moved through; the number of fills made."""
        made = 0
        for symbol, resting in list(self._open.items()):
            for order in list(resting):
                if not order.is_open or order.price is None:
                    continue
                limit = self.ticks(order.instrument, order.price)
                wanted = self.lots(order.instrument, order.remaining) if order.remaining > 0 else 0
                for price, take, displayed in self._plan(order, limit, wanted, None):
                    self._consume(symbol, 1 if order.side == BUY else 0, price, displayed, take)
                    self._fill(order, order.price, order.instrument.size.value(take), maker=True)
                    made += 1
        return made

    def rename(self, order: Order, client_id: str) -> None:
        """Give ``order`` a new client order id (Binance's amend does), keeping the lookups right."""
        if client_id == order.client_id:
            return
        self._by_client[(order.account.name, order.client_id)].remove(order)
        order.client_id = client_id
        self._by_client.setdefault((order.account.name, client_id), []).append(order)

    # --- cancel and amend -------------------------------------------------------------------

    def cancel(self, order: Order) -> Order:
        if not order.is_open:
            raise Rejection(Rejection.NOT_OPEN, order.status)
        self._close(order, CANCELED)
        return order

    def amend(self, order: Order, *, price: Decimal | None = None, size: Decimal | None = None,
              below_filled: str = "reject", keep_priority: bool = False,
              post_only_cross: str = "reject") -> Order:  # fmt: skip
        """Change price and/or size of an open limit order.

        ``below_filled``: what a new size at or below the executed size does: "reject" (Rejection
        BELOW_FILLED), "cancel" (the order is canceled: USD-M) or "fill" (it is done: FILLED).
        ``keep_priority``: size decreases only (Binance spot amend/keepPriority), no re-matching.
        ``post_only_cross``: a post-only order repriced through the market: "reject" or "cancel".
        """
        if not order.is_open:
            raise Rejection(Rejection.NOT_OPEN, order.status)
        grid = order.instrument
        new_price = order.price if price is None else price
        new_size = order.size if size is None else size
        if new_price is None or order.type != LIMIT:
            raise Rejection(Rejection.NOT_OPEN, "only limit orders can be amended")
        limit = self.ticks(grid, new_price)
        self.lots(grid, new_size)
        if keep_priority and new_size >= order.size:
            raise Rejection(Rejection.SIZE_NOT_DECREASED if new_size > order.size else Rejection.NO_CHANGE)
        if new_price == order.price and new_size == order.size:
            raise Rejection(Rejection.NO_CHANGE)
        if new_size <= order.executed:
            if below_filled == "reject":
                raise Rejection(Rejection.BELOW_FILLED, f"{new_size} <= executed {order.executed}")
            order.edits.append((new_price, new_size, self.now_ms()))
            if below_filled == "fill":
                order.size = order.executed
                self._close(order, FILLED)
            else:
                self._close(order, CANCELED)
            return order
        if new_price * new_size < grid.min_notional and not order.reduce_only:
            raise Rejection(Rejection.NOTIONAL, f"{new_price * new_size} < {grid.min_notional}")
        remaining_lots = int((new_size - order.executed) / grid.step_size)
        probe = Order(0, "", order.client_id, order.account, order.symbol, order.side, LIMIT, order.tif, new_price,
                      new_size - order.executed, grid)  # fmt: skip
        plan = [] if keep_priority else self._plan(probe, limit, remaining_lots, None)
        if order.tif == POST_ONLY and plan:
            if post_only_cross == "cancel":
                order.edits.append((new_price, new_size, self.now_ms()))
                self._close(order, CANCELED)
                return order
            raise Rejection(Rejection.WOULD_TAKE, "post-only order would cross")
        # Re-lock for the new remainder: release the old hold, take the new one (all or nothing).
        wallet = self.wallet(order.account)
        old_asset, old_locked = order.locked_asset, order.locked
        wallet.unlock(old_asset, old_locked)
        order.locked = Decimal(0)
        before = (order.price, order.size)
        order.price, order.size = new_price, new_size
        try:
            self._reserve(order, plan)
        except Rejection:
            order.price, order.size = before
            wallet.lock(old_asset, old_locked)
            order.locked_asset, order.locked = old_asset, old_locked
            raise
        order.updated_ms = self.now_ms()
        order.edits.append((new_price, new_size, order.updated_ms))
        if not keep_priority and price is not None and price != before[0]:
            self._unrest(order)  # a new price loses time priority
            self._open.setdefault(order.symbol, []).append(order)
        self._notify(order)
        for price_ticks, take, displayed in plan:
            self._consume(order.symbol, 1 if order.side == BUY else 0, price_ticks, displayed, take)
            self._fill(order, grid.price.value(price_ticks), grid.size.value(take), maker=False)
        return order
