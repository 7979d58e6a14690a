"""Binance spot (``binance-spot``) and USD-M futures (``binance-usdm``)."""
