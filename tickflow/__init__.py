"""tickflow: a Kafka-native market-data and order-routing pipeline for crypto exchanges.

``tickflow.consume(...)`` (``tickflow/reading.py``) reads its topics back for analytics jobs;
imported on first use, so that ``import tickflow.events`` stays light.
"""

from __future__ import annotations

from typing import Any

__all__ = ["consume"]


def __getattr__(name: str) -> Any:
    if name == "consume":
        from tickflow.reading import consume

        return consume
    raise AttributeError(f"module 'tickflow' has no attribute {name!r}")
