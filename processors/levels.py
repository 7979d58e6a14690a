"""One side of a book in memory: levels in a dict, the best price found through a heap
(``tickflow.book_side``, as the producers' generic book keeps it). Unlike the producers' side,
``apply`` returns the levels that really changed, because those (and only those) are written to the
agent's table: a removal of a level that is not there, or a size written again unchanged, costs
no changelog record.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from decimal import Decimal

from tickflow.book_side import BookSide
from tickflow.events import PriceLevel

#: (price, new size), size ``None`` when the level went away.
Change = tuple[Decimal, Decimal | None]


class Side(BookSide):
    __slots__ = ()

    def apply(self, levels: Iterable[PriceLevel]) -> list[Change]:
        book = self.levels
        changes: list[Change] = []
        for level in levels:
            price, size = level.price, level.size
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

    def replace(self, levels: Iterable[PriceLevel]) -> list[Change]:
        """Become exactly ``levels`` (a snapshot): the changes are the levels that differ."""
        new = {level.price: level.size for level in levels if level.size}
        old = self.levels
        changes: list[Change] = [(price, None) for price in old if price not in new]
        changes += [(price, size) for price, size in new.items() if old.get(price) != size]
        self.reset(new)
        return changes

    def load(self, price: Decimal, size: Decimal) -> None:
        """Put back a level read from the table (recovery)."""
        if price not in self.levels:
            self.add_price(price)
        self.levels[price] = size

    def top(self, n: int | None = None) -> list[tuple[Decimal, Decimal]]:
        """The best ``n`` levels (all if ``None``), best first."""
        items = self.levels.items()
        if n is None or n >= len(self.levels):
            return sorted(items, reverse=self.sign < 0)
        pick = heapq.nlargest if self.sign < 0 else heapq.nsmallest
        return pick(n, items)


def plain(value: Decimal) -> str:
    """``value`` in plain notation without trailing zeros (``65000.01``, ``0.00000012``, ``100``):
    one text for one number whatever its scale, as a table key must be."""
    text = str(value)
    if "E" in text:  # scientific notation (very small or large exponents): the slow, general way
        return f"{value.normalize():f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text if text != "-0" else "0"
