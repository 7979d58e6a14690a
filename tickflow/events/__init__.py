"""Typed events, one per record of the Avro contract in ``schemas/``."""

from tickflow.events.base import Event, MarketEvent, PriceLevel
from tickflow.events.enums import (
    BookHealth,
    BookResetReason,
    BookUpdateKind,
    ConnectorState,
    MarketType,
    OrderStatus,
    OrderType,
    RejectReason,
    Side,
    TimeInForce,
)
from tickflow.events.market import (
    BestBidOffer,
    BookDepth,
    BookReset,
    BookTop,
    BookUpdate,
    ConnectorStatus,
    Instrument,
    Kline,
    RawFrame,
    Trade,
)
from tickflow.events.orders import (
    AmendOrder,
    Balance,
    CancelOrder,
    CreateOrder,
    KillSwitch,
    OrderCommand,
    OrderEvent,
    OrderState,
)
from tickflow.events.system import DeadLetter

#: Every concrete event type, by Avro full name.
EVENT_TYPES: dict[str, type[Event]] = {
    cls.avro_name: cls
    for cls in (
        Trade,
        BookUpdate,
        BookReset,
        Kline,
        BestBidOffer,
        BookTop,
        BookDepth,
        ConnectorStatus,
        RawFrame,
        Instrument,
        CreateOrder,
        CancelOrder,
        AmendOrder,
        OrderEvent,
        KillSwitch,
        OrderState,
        Balance,
        DeadLetter,
    )
}

__all__ = [
    "EVENT_TYPES",
    "AmendOrder",
    "Balance",
    "BestBidOffer",
    "BookDepth",
    "BookHealth",
    "BookReset",
    "BookResetReason",
    "BookTop",
    "BookUpdate",
    "BookUpdateKind",
    "CancelOrder",
    "ConnectorState",
    "ConnectorStatus",
    "CreateOrder",
    "DeadLetter",
    "Event",
    "Instrument",
    "KillSwitch",
    "Kline",
    "MarketEvent",
    "MarketType",
    "OrderCommand",
    "OrderEvent",
    "OrderState",
    "OrderStatus",
    "OrderType",
    "PriceLevel",
    "RawFrame",
    "RejectReason",
    "Side",
    "TimeInForce",
    "Trade",
]
