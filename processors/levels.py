"""One side of a book in the order-book agent: levels in a dict, the best price found through a
heap (``tickflow.book_side``, as the producers' generic book keeps it), prices and sizes as
integers at scale 18 (``scaled.py``: a price's hash and comparisons are an int's, not a
``Decimal``'s).

Unlike the producers' side, ``apply`` returns the levels that really changed, because those (and
only those) are written to the agent's table: a removal of a level that is not there, or a size
written again unchanged, costs no changelog record.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable

from tickflow.book_side import BookSide

#: (price, new size), size ``None`` when the level went away; integers at scale 18.
Change = tuple[int, int | None]
#: (price, size) at scale 18, as ``AvroCodec.decode_fields`` reads a ``PriceLevel``.
Level = tuple[int, int]


class Side(BookSide[int]):
    __slots__ = ()

    def apply(self, levels: Iterable[Level]) -> list[Change]:
        book = self.levels
        changes: list[Change] = []
        for price, size in levels:
            if size:
                old = book.get(price)
                if old is None:
                    self.add_price(price)
                elif old == size:
                    continue
                book[price] = size
                changes.append((price, size))
            elif book.pop(price, None) is not None:
                changes.append((price, None))
        self.compact()
        return changes

    def replace(self, levels: Iterable[Level]) -> list[Change]:
        """Become exactly ``levels`` (a snapshot): the changes are the levels that differ."""
        new = {price: size for price, size in levels if size}
        old = self.levels
        changes: list[Change] = [(price, None) for price in old if price not in new]
        changes += [(price, size) for price, size in new.items() if old.get(price) != size]
        self.reset(new)
        return changes

    def load(self, price: int, size: int) -> None:
        """Put back a level read from the table (recovery)."""
        if price not in self.levels:
            self.add_price(price)
        self.levels[price] = size

    def top(self, n: int | None = None) -> list[Level]:
        """The best ``n`` levels (all if ``None``), best first."""
        items = self.levels.items()
        if n is None or n >= len(self.levels):
            return sorted(items, reverse=self.sign < 0)
        pick = heapq.nlargest if self.sign < 0 else heapq.nsmallest
        return pick(n, items)
