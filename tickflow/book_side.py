"""One side of an order book in memory, as the producers' generic book and the processors'
book agent both keep it: levels in a dict, the best price found through a heap. Prices are
``Decimal``s (the producers) or integers at scale 18 (the agent: ``processors/scaled.py``); the
heap holds ``sign * price`` (bids negated), so its smallest entry is the best price, compared
exactly.

A price enters the heap when its level appears; a level that goes away leaves its heap entry
behind, dropped when it reaches the top. So an update costs a dict write per level (plus a heap
push for a new price) instead of a sorted insert, and the best price stays cheap however deep
the book is. Entries left behind deep in the book never reach the top, so once the heap holds
twice the levels (plus a margin) it is rebuilt from them: memory stays proportional to the
book, at an amortized constant cost per update.

Subclasses write their own ``apply`` (what an update means differs: the processors also report
the levels that really changed) and call ``add_price`` for a new level and ``compact`` after.
"""

from __future__ import annotations

import heapq
from decimal import Decimal
from typing import Generic, TypeVar

#: A price or size: an exact ``Decimal``, or an integer at a fixed scale.
N = TypeVar("N", Decimal, int)


class BookSide(Generic[N]):
    __slots__ = ("heap", "levels", "sign")

    def __init__(self, sign: int) -> None:
        self.levels: dict[N, N] = {}
        self.heap: list[N] = []  # ``sign * price`` of each level (and of some gone: see above)
        self.sign = sign  # -1 for bids (best = highest), +1 for asks (best = lowest)

    def add_price(self, price: N) -> None:
        """A level appeared at ``price`` (call before writing it into ``levels``)."""
        heapq.heappush(self.heap, self.sign * price)

    def compact(self) -> None:
        """Rebuild the heap once left-behind entries make it more than twice the levels."""
        if len(self.heap) > 2 * len(self.levels) + 64:
            self.reset(self.levels)

    def reset(self, levels: dict[N, N]) -> None:
        """Become exactly ``levels`` (the heap rebuilt from them)."""
        self.levels = levels
        sign = self.sign
        self.heap = [sign * price for price in levels]
        heapq.heapify(self.heap)

    def best(self) -> tuple[N, N] | None:
        heap, book, sign = self.heap, self.levels, self.sign
        while heap and sign * heap[0] not in book:
            heapq.heappop(heap)
        if not heap:
            return None
        price = sign * heap[0]
        return price, book[price]

    def clear(self) -> None:
        self.levels.clear()
        self.heap.clear()
