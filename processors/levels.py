"""One side of a book in the order-book agent: levels in a dict, the best price found through a
heap, prices and sizes as integers at scale 18 (``scaled.py``: a price's hash and comparisons
are an int's, not a ``Decimal``'s).

As in the producers' book (``tickflow.book_side``): a price enters the heap when its level
appears; a level that goes away leaves its heap entry behind, dropped when it reaches the top;
once the heap holds twice the levels (plus a margin) it is rebuilt from them. The heap holds
``sign * price`` (bids negated), so its smallest entry is the best price.

Unlike the producers' side, ``apply`` returns the levels that really changed, because those (and
only those) are written to the agent's table: a removal of a level that is not there, or a size
written again unchanged, costs no changelog record.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable

#: (price, new size), size ``None`` when the level went away; integers at scale 18.
Change = tuple[int, int | None]
#: (price, size) at scale 18, as ``AvroCodec.decode_fields`` reads a ``PriceLevel``.
Level = tuple[int, int]


class Side:
    __slots__ = ("heap", "levels", "sign")

    def __init__(self, sign: int) -> None:
        self.levels: dict[int, int] = {}
        self.heap: list[int] = []
        self.sign = sign  # -1 for bids (best = highest), +1 for asks (best = lowest)

    def apply(self, levels: Iterable[Level]) -> list[Change]:
        book, heap, sign = self.levels, self.heap, self.sign
        changes: list[Change] = []
        for price, size in levels:
            if size:
                old = book.get(price)
                if old is None:
                    heapq.heappush(heap, sign * price)
                elif old == size:
                    continue
                book[price] = size
                changes.append((price, size))
            elif book.pop(price, None) is not None:
                changes.append((price, None))
        if len(heap) > 2 * len(book) + 64:
            self.reset(book)
        return changes

    def replace(self, levels: Iterable[Level]) -> list[Change]:
        """Become exactly ``levels`` (a snapshot): the changes are the levels that differ."""
        new = {price: size for price, size in levels if size}
        old = self.levels
        changes: list[Change] = [(price, None) for price in old if price not in new]
        changes += [(price, size) for price, size in new.items() if old.get(price) != size]
        self.reset(new)
        return changes

    def reset(self, levels: dict[int, int]) -> None:
        """Become exactly ``levels`` (the heap rebuilt from them)."""
        self.levels = levels
        sign = self.sign
        self.heap = [sign * price for price in levels]
        heapq.heapify(self.heap)

    def load(self, price: int, size: int) -> None:
        """Put back a level read from the table (recovery)."""
        if price not in self.levels:
            heapq.heappush(self.heap, self.sign * price)
        self.levels[price] = size

    def best(self) -> Level | None:
        heap, book, sign = self.heap, self.levels, self.sign
        while heap and sign * heap[0] not in book:
            heapq.heappop(heap)
        if not heap:
            return None
        price = sign * heap[0]
        return price, book[price]

    def top(self, n: int | None = None) -> list[Level]:
        """The best ``n`` levels (all if ``None``), best first."""
        items = self.levels.items()
        if n is None or n >= len(self.levels):
            return sorted(items, reverse=self.sign < 0)
        pick = heapq.nlargest if self.sign < 0 else heapq.nsmallest
        return pick(n, items)
