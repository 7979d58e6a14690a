"""Pre-trade checks: every rule a command must pass before anything is sent to a venue.

Each rule has a name; a command that fails one is answered by a REJECTED event carrying the
reason (INVALID_COMMAND for a command that makes no sense, RISK_CHECK_FAILED for one that breaks
a limit, KILL_SWITCH) and the rule's name, and nothing reaches the venue. Rules are checked in
the order below, so the first failure is the one reported:

command: ``command_id``, ``order_id``, ``account``, ``venue``, ``symbol``, ``instrument_status``,
``side``, ``stale_command``; order: ``size_positive``, ``price_required``, ``price_positive``,
``market_price``, ``reduce_only_spot``, ``tick_size``, ``lot_size``, ``min_size``, ``max_size``,
``min_notional``; account: ``kill_switch``, ``command_rate``, ``bbo_unavailable``, ``price_band``,
``max_order_notional``, ``max_open_orders``, ``max_position``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

from processors.router.market import MarketView, Quote
from processors.router.settings import AccountLimits, RouterSettings
from tickflow.events import AmendOrder, CreateOrder, Instrument, MarketType, OrderCommand, OrderType, RejectReason, Side

#: Identifiers the venues take in client ids and we put in Kafka keys: bounded and printable.
MAX_ID_LENGTH = 128


@dataclass(frozen=True)
class Rejection:
    reason: RejectReason
    rule: str
    message: str


class CheckFailed(Exception):
    def __init__(self, rejection: Rejection) -> None:
        super().__init__(rejection.message)
        self.rejection = rejection


def invalid(rule: str, message: str) -> CheckFailed:
    return CheckFailed(Rejection(RejectReason.INVALID_COMMAND, rule, message))


def risk(rule: str, message: str) -> CheckFailed:
    return CheckFailed(Rejection(RejectReason.RISK_CHECK_FAILED, rule, message))


@dataclass
class Exposure:
    """What an account has out, as the router knows it (from its order state)."""

    open_orders: int = 0
    #: Net filled position per (venue, symbol), base units, buys positive.
    position: dict[tuple[str, str], Decimal] = field(default_factory=dict)
    #: Open (unfilled) size per (venue, symbol, side).
    open_size: dict[tuple[str, str, Side], Decimal] = field(default_factory=dict)


class CommandRate:
    """A token bucket per account: ``rate`` commands a second, bursts of one second's worth."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.tokens = max(1.0, rate)
        self.updated = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(max(1.0, self.rate), self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True


class PreTradeChecks:
    def __init__(self, settings: RouterSettings, market: MarketView) -> None:
        self.settings = settings
        self.market = market
        self._rates: dict[str, CommandRate] = {}

    # --- what every command must be -----------------------------------------------------------

    def command(self, command: OrderCommand, now_us: int) -> Instrument:
        """The checks every command passes (cancels included); returns the instrument."""
        for name in ("command_id", "order_id"):
            value = getattr(command, name)
            if not value or len(value) > MAX_ID_LENGTH or not value.isprintable():
                raise invalid(name, f"{name} must be 1-{MAX_ID_LENGTH} printable characters")
        account = self.settings.accounts.get(command.account)
        if account is None:
            raise invalid("account", f"unknown account {command.account[:MAX_ID_LENGTH]!r}")
        if command.venue not in account.venues:
            raise invalid("venue", f"account {command.account!r} has no credentials for venue {command.venue!r}")
        instrument = self.market.instrument(command.venue, command.symbol)
        if instrument is None:
            raise invalid("symbol", f"{command.venue} lists no instrument {command.symbol[:MAX_ID_LENGTH]!r}")
        if command.market != instrument.market:
            raise invalid("market", f"{command.symbol} on {command.venue} is {instrument.market}, not {command.market}")
        age = (now_us - command.issued_ts) / 1e6
        if age > self.settings.max_command_age:
            raise invalid(
                "stale_command", f"issued {age:.0f} s ago (max_command_age {self.settings.max_command_age:g})"
            )
        return instrument

    # --- new orders and amends ----------------------------------------------------------------

    def create(self, command: CreateOrder, instrument: Instrument, exposure: Exposure) -> None:
        if not instrument.trading:
            raise invalid("instrument_status", f"{command.symbol} is not trading ({instrument.status})")
        if command.side not in (Side.BUY, Side.SELL):
            raise invalid("side", "side must be BUY or SELL")
        if command.order_type is OrderType.LIMIT and command.price is None:
            raise invalid("price_required", "a LIMIT order needs a price")
        if command.order_type is OrderType.MARKET and command.price is not None:
            raise invalid("market_price", "a MARKET order takes no price")
        if command.reduce_only and instrument.market is MarketType.SPOT:
            raise invalid("reduce_only_spot", "reduce_only applies to derivatives only")
        self._order(command.size, command.price, instrument)
        self._account(command, command.side, command.size, command.price, instrument, exposure, new_order=True)

    def amend(self, command: AmendOrder, side: Side, size: Decimal, price: Decimal | None, filled: Decimal,
              instrument: Instrument, exposure: Exposure) -> tuple[Decimal, Decimal | None]:  # fmt: skip
        """Checks an amend; returns the order's new (size, price)."""
        if command.new_size is None and command.new_price is None:
            raise invalid("amend_empty", "an amend needs new_price, new_size or both")
        new_size = command.new_size if command.new_size is not None else size
        new_price = command.new_price if command.new_price is not None else price
        if new_price is None:
            raise invalid("price_required", "only a LIMIT order can be amended")
        self._order(new_size, new_price, instrument)
        if new_size <= filled:
            raise invalid("size_below_filled", f"new size {new_size} is not above the filled {filled}")
        growing = new_size > size
        if growing or new_price != price:
            extra = new_size - size if growing else Decimal(0)
            self._account(command, side, new_size, new_price, instrument, exposure, new_order=False,
                          added_size=extra, kill_switch=growing)  # fmt: skip
        return new_size, new_price

    def _order(self, size: Decimal, price: Decimal | None, instrument: Instrument) -> None:
        try:
            if not size.is_finite() or size <= 0:
                raise invalid("size_positive", f"size must be a positive number, not {size}")
            if price is not None and (not price.is_finite() or price <= 0):
                raise invalid("price_positive", f"price must be a positive number, not {price}")
            if price is not None and instrument.tick_size and price % instrument.tick_size != 0:
                raise invalid("tick_size", f"price {price} is not a multiple of the tick size {instrument.tick_size}")
            if instrument.lot_size and size % instrument.lot_size != 0:
                raise invalid("lot_size", f"size {size} is not a multiple of the lot size {instrument.lot_size}")
        except InvalidOperation:
            raise invalid("size_positive", "size or price out of range") from None
        if instrument.min_size is not None and size < instrument.min_size:
            raise invalid("min_size", f"size {size} is below the minimum {instrument.min_size}")
        if instrument.max_size is not None and size > instrument.max_size:
            raise invalid("max_size", f"size {size} is above the maximum {instrument.max_size}")
        if price is not None and instrument.min_notional is not None and price * size < instrument.min_notional:
            raise invalid("min_notional", f"notional {price * size} is below the minimum {instrument.min_notional}")

    def _account(self, command: OrderCommand, side: Side, size: Decimal, price: Decimal | None,
                 instrument: Instrument, exposure: Exposure, *, new_order: bool, added_size: Decimal | None = None,
                 kill_switch: bool = True) -> None:  # fmt: skip
        if kill_switch and (switch := self.market.kill_switch(command.account)) is not None:
            why = switch.reason or "no reason given"
            message = f"kill switch engaged for {switch.scope!r}: {why}"
            raise CheckFailed(Rejection(RejectReason.KILL_SWITCH, "kill_switch", message))
        limits: AccountLimits = self.settings.accounts[command.account].limits
        if limits.commands_per_second is not None:
            rate = self._rates.get(command.account)
            if rate is None or rate.rate != limits.commands_per_second:
                rate = self._rates[command.account] = CommandRate(limits.commands_per_second)
            if not rate.take():
                raise risk("command_rate", f"more than {limits.commands_per_second:g} commands/s for this account")
        quote: Quote | None = None
        if limits.price_band is not None or (price is None and limits.max_order_notional is not None):
            quote = self.market.quote(command.venue, command.symbol, self.settings.bbo_max_age)
            if quote is None:
                age = self.market.quote_age(command.venue, command.symbol)
                last = "none received" if age is None else f"the last {age:.0f} s ago"
                raise risk("bbo_unavailable", f"no best bid/offer of {command.symbol} younger than "
                                              f"{self.settings.bbo_max_age:g} s ({last})")  # fmt: skip
        if price is not None and limits.price_band is not None and quote is not None:
            if side is Side.BUY and quote.ask is not None and price > quote.ask * (1 + limits.price_band):
                raise risk("price_band", f"buy at {price} is more than {limits.price_band:%} above the ask {quote.ask}")
            if side is Side.SELL and quote.bid is not None and price < quote.bid * (1 - limits.price_band):
                raise risk(
                    "price_band", f"sell at {price} is more than {limits.price_band:%} below the bid {quote.bid}"
                )
        if limits.max_order_notional is not None:
            reference = (
                price if price is not None else (quote.ask if side is Side.BUY else quote.bid) if quote else None
            )
            if reference is not None and reference * size > limits.max_order_notional:
                limit = limits.max_order_notional
                raise risk("max_order_notional", f"notional {reference * size} is above the account's {limit}")
        if new_order and limits.max_open_orders is not None and exposure.open_orders >= limits.max_open_orders:
            raise risk("max_open_orders", f"the account has {exposure.open_orders} open orders (max "
                                          f"{limits.max_open_orders})")  # fmt: skip
        if limits.max_position is not None:
            key = (command.venue, command.symbol)
            position = exposure.position.get(key, Decimal(0))
            open_same_side = exposure.open_size.get((*key, side), Decimal(0))
            sign = 1 if side is Side.BUY else -1
            adding = size if added_size is None else added_size
            worst = position + sign * (open_same_side + adding)
            if abs(worst) > limits.max_position:
                raise risk("max_position", f"position could reach {worst} (max {limits.max_position})")
