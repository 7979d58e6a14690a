"""One side of a book in memory: levels in a dict, the best price found through a heap.

Like ``producers.book_sync``'s side, a price enters the heap once, when its level appears; a
removed level leaves its heap entry behind, dropped when it reaches the top. Unlike it, ``apply``
returns the levels that really changed, because those (and only those) are written to the
agent's table: a removal of a level that is not there, or a size written again unchanged, costs
no changelog record.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from decimal import Decimal

from tickflow.events import PriceLevel

#: (price, new size), size ``None`` when the level went away.
Change = tuple[Decimal, Decimal | None]


class Side:
    __slots__ = ("heap", "levels", "sign")

    def __init__(self, sign: int) -> None:
        self.levels: dict[Decimal, Decimal] = {}
        self.heap: list[tuple[float, Decimal]] = []
        self.sign = sign  # -1 for bids (best = highest), +1 for asks (best = lowest)

    def apply(self, levels: Iterable[PriceLevel]) -> list[Change]:
        book, heap, sign = self.levels, self.heap, self.sign
        changes: list[Change] = []
        for level in levels:
            price, size = level.price, level.size
            if size:
                old = book.get(price)
                if old is None:
                    heapq.heappush(heap, (sign * float(price), price))
                elif old == size:
                    continue
                book[price] = size
                changes.append((price, size))
            elif book.pop(price, None) is not None:
                changes.append((price, None))
        return changes

    def replace(self, levels: Iterable[PriceLevel]) -> list[Change]:
        """Become exactly ``levels`` (a snapshot): the changes are the levels that differ."""
        new = {level.price: level.size for level in levels if level.size}
        old = self.levels
        changes: list[Change] = [(price, None) for price in old if price not in new]
        changes += [(price, size) for price, size in new.items() if old.get(price) != size]
        self.levels = new
        self.heap = [(self.sign * float(price), price) for price in new]
        heapq.heapify(self.heap)
        return changes

    def load(self, price: Decimal, size: Decimal) -> None:
        """Put back a level read from the table (recovery)."""
        if price not in self.levels:
            heapq.heappush(self.heap, (self.sign * float(price), price))
        self.levels[price] = size

    def best(self) -> tuple[Decimal, Decimal] | None:
        heap, book = self.heap, self.levels
        if len(heap) > 2 * len(book) + 64:  # levels that come and go leave entries behind: compact
            heap = self.heap = [(self.sign * float(price), price) for price in book]
            heapq.heapify(heap)
        while heap and heap[0][1] not in book:
            heapq.heappop(heap)
        if not heap:
            return None
        price = heap[0][1]
        return price, book[price]

    def top(self, n: int | None = None) -> list[tuple[Decimal, Decimal]]:
        """The best ``n`` levels (all if ``None``), best first."""
        items = self.levels.items()
        if n is None or n >= len(self.levels):
            return sorted(items, reverse=self.sign < 0)
        pick = heapq.nlargest if self.sign < 0 else heapq.nsmallest
        return pick(n, items)
