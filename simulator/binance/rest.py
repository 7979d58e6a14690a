"""Binance REST bodies: exchangeInfo, depth snapshots, and Binance's error replies."""

from __future__ import annotations

import json
import time
from decimal import Decimal

from websockets.http11 import Response

from simulator.binance.markets import BinanceMarket
from simulator.instruments import Instrument
from simulator.server import json_response

USED_WEIGHT = "X-MBX-USED-WEIGHT-1M"


def error(status: int, code: int, msg: str, headers: dict[str, str] | None = None) -> Response:
    return json_response(status, {"code": code, "msg": msg}, headers)


def invalid_symbol() -> Response:
    return error(400, -1121, "Invalid symbol.")


def missing(parameter: str) -> Response:
    return error(400, -1102, f"Mandatory parameter '{parameter}' was not sent, was empty/null, or malformed.")


def throttled(market: BinanceMarket, limit: int, window: float, retry_after: int, used: int) -> Response:
    per = "1 MINUTE" if window == 60 else f"{window:g} SECOND"
    return error(
        429, -1003,
        f"Too much request weight used; current limit is {limit} request weight per {per}. "
        "Please use WebSocket Streams for live updates to avoid polling the API.",
        {"Retry-After": str(retry_after), USED_WEIGHT: str(used)},
    )  # fmt: skip


def banned(retry_after: int, used: int = 0) -> Response:
    until = int(time.time() * 1000) + retry_after * 1000
    return error(
        418, -1003,
        f"Way too much request weight used; IP banned until {until}. "
        "Please use WebSocket Streams for live updates to avoid bans.",
        {"Retry-After": str(retry_after), USED_WEIGHT: str(used)},
    )  # fmt: skip


def _number(value: Decimal, places: int | None) -> str:
    """Spot pads to 8 decimals; USD-M filters are plain decimals."""
    return f"{value:.{places}f}" if places is not None else f"{value.normalize():f}"


def symbol_info(market: BinanceMarket, symbol: str, instrument: Instrument) -> dict:
    """One entry of exchangeInfo's ``symbols`` in the venue's shape (the fields a client reads)."""
    places = None if market.usdm else 8
    tick, step = instrument.tick_size, instrument.step_size
    min_qty = step * instrument.min_size_lots
    price_filter = {"filterType": "PRICE_FILTER", "minPrice": _number(tick, places),
                    "maxPrice": _number(Decimal(1000000), places), "tickSize": _number(tick, places)}  # fmt: skip
    lot_size = {"filterType": "LOT_SIZE", "minQty": _number(min_qty, places),
                "maxQty": _number(Decimal(9000000), places), "stepSize": _number(step, places)}  # fmt: skip
    if market.usdm:
        return {
            "symbol": symbol, "pair": symbol, "contractType": "PERPETUAL", "deliveryDate": 4133404800000,
            "onboardDate": 1569398400000, "status": "TRADING", "maintMarginPercent": "2.5000",
            "requiredMarginPercent": "5.0000", "baseAsset": instrument.base, "quoteAsset": instrument.quote,
            "marginAsset": instrument.quote, "pricePrecision": instrument.price.decimals,
            "quantityPrecision": instrument.size.decimals, "baseAssetPrecision": 8, "quotePrecision": 8,
            "underlyingType": "COIN", "underlyingSubType": [], "settlePlan": 0, "triggerProtect": "0.0500",
            "liquidationFee": "0.012500", "marketTakeBound": "0.05",
            "filters": [
                price_filter, lot_size,
                {**lot_size, "filterType": "MARKET_LOT_SIZE"},
                {"filterType": "MAX_NUM_ORDERS", "limit": 200},
                {"filterType": "MAX_NUM_ALGO_ORDERS", "limit": 10},
                {"filterType": "MIN_NOTIONAL", "notional": _number(instrument.min_notional, None)},
                {"filterType": "PERCENT_PRICE", "multiplierUp": "1.0500", "multiplierDown": "0.9500",
                 "multiplierDecimal": "4"},
            ],
            "orderTypes": ["LIMIT", "MARKET", "STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET",
                           "TRAILING_STOP_MARKET"],
            "timeInForce": ["GTC", "IOC", "FOK", "GTX", "GTD"],
        }  # fmt: skip
    return {
        "symbol": symbol, "status": "TRADING", "baseAsset": instrument.base, "baseAssetPrecision": 8,
        "quoteAsset": instrument.quote, "quotePrecision": 8, "quoteAssetPrecision": 8,
        "baseCommissionPrecision": 8, "quoteCommissionPrecision": 8,
        "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"],
        "icebergAllowed": True, "ocoAllowed": True, "otoAllowed": True, "quoteOrderQtyMarketAllowed": True,
        "allowTrailingStop": True, "cancelReplaceAllowed": True, "isSpotTradingAllowed": True,
        "isMarginTradingAllowed": False,
        "filters": [
            price_filter, lot_size,
            {"filterType": "ICEBERG_PARTS", "limit": 10},
            {**lot_size, "filterType": "MARKET_LOT_SIZE"},
            {"filterType": "TRAILING_DELTA", "minTrailingAboveDelta": 10, "maxTrailingAboveDelta": 2000,
             "minTrailingBelowDelta": 10, "maxTrailingBelowDelta": 2000},
            {"filterType": "PERCENT_PRICE_BY_SIDE", "bidMultiplierUp": "5", "bidMultiplierDown": "0.2",
             "askMultiplierUp": "5", "askMultiplierDown": "0.2", "avgPriceMins": 5},
            {"filterType": "NOTIONAL", "minNotional": _number(instrument.min_notional, 8), "applyMinToMarket": True,
             "maxNotional": "9000000.00000000", "applyMaxToMarket": False, "avgPriceMins": 5},
            {"filterType": "MAX_NUM_ORDERS", "maxNumOrders": 200},
            {"filterType": "MAX_NUM_ALGO_ORDERS", "maxNumAlgoOrders": 5},
        ],
        "permissions": [], "permissionSets": [["SPOT"]], "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
        "allowedSelfTradePreventionModes": ["EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"],
    }  # fmt: skip


def exchange_info(market: BinanceMarket, instruments: dict[str, Instrument], weight_limit: int) -> dict:
    limits = [{"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": weight_limit}]
    if market.usdm:
        limits += [{"rateLimitType": "ORDERS", "interval": "MINUTE", "intervalNum": 1, "limit": 1200},
                   {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 300}]  # fmt: skip
    else:
        limits += [{"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100},
                   {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": 200000},
                   {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5,
                    "limit": 61000}]  # fmt: skip
    body: dict = {"timezone": "UTC", "serverTime": int(time.time() * 1000)}
    if market.usdm:
        body["futuresType"] = "U_MARGINED"
    body |= {"rateLimits": limits, "exchangeFilters": []}
    if market.usdm:
        quotes = sorted({i.quote for i in instruments.values()})
        body["assets"] = [{"asset": q, "marginAvailable": True, "autoAssetExchange": "-10000"} for q in quotes]
    body["symbols"] = [symbol_info(market, s, i) for s, i in instruments.items()]
    return body


def depth_body(market: BinanceMarket, last_id: int, bids: list[list[str]], asks: list[list[str]]) -> str:
    """A depth snapshot: USD-M also states the event and transaction times."""
    head = {"lastUpdateId": last_id}
    if market.usdm:
        now = int(time.time() * 1000)
        head |= {"E": now, "T": now}
    return json.dumps({**head, "bids": bids, "asks": asks}, separators=(",", ":"))
