"""What every venue's stream handler shares: where events go, what it counts, and the replies
to subscribe requests it hands back to the connection.

A venue's stream handler (``producers/venues/<venue>/stream.py``) turns that venue's frames into
events. It has no socket and no HTTP client: the live feed and ``tickflow capture check`` drive
it the same way, so what is checked offline is exactly what runs live.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

from tickflow.events import Event

log = logging.getLogger(__name__)


class EventSink(Protocol):
    """Where a stream's events go: ``EventProducer`` live, a counter offline."""

    def send(self, topic: str, event: Event) -> None: ...


@dataclass(frozen=True)
class Control:
    """A frame that answers a subscription request instead of carrying market data.

    ``request_id`` names the request where the venue echoes ids (Binance); where it does not
    (Coinbase), replies come in request order. ``error`` is the venue's refusal, ``None`` if the
    request was accepted; ``active`` is the venue's own list of live subscriptions where it
    sends one (Coinbase's ``subscriptions`` message), as subscription keys.
    """

    request_id: int | None = None
    error: str | None = None
    active: frozenset[str] | None = None


@dataclass
class StreamCounters:
    frames: int = 0
    malformed_frames: int = 0
    events: int = 0
    last_error: str | None = None

    def malformed(self, reason: str) -> None:
        """A frame that could not be parsed: counted, logged, skipped; never fatal."""
        self.malformed_frames += 1
        self.last_error = reason
        log.warning("skipped malformed frame: %s", reason)


def reconnect_detail(connection_number: int) -> str:
    """What the book resets of a connection's ``connection_number``-th WebSocket say (live, and
    when a raw-frame topic is re-parsed)."""
    return "first connection" if connection_number <= 1 else "reconnected: data may have been missed"
