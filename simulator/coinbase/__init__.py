"""Simulated Coinbase Advanced Trade market data over the synthetic market."""

from simulator.coinbase.server import CoinbaseSynthetic

__all__ = ["CoinbaseSynthetic"]
