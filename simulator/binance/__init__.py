"""Simulated Binance spot and USD-M: one protocol layer (``server``) over a recording replay
(``BinanceReplay``) or the synthetic market (``BinanceSynthetic``)."""

from simulator.binance.replay import BinanceReplay
from simulator.binance.server import BinanceServer
from simulator.binance.synthetic import BinanceSynthetic
from simulator.faults import Faults, ReplayStats, SimStats

__all__ = ["BinanceReplay", "BinanceServer", "BinanceSynthetic", "Faults", "ReplayStats", "SimStats"]
