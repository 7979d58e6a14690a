"""Exact decimal strings from integer grid units, formatted the way each venue formats them.

The market works in integers (ticks of a price increment, lots of a size increment) so that no
float ever touches a price; these functions turn ``units * increment`` into the venue's text:
Binance spot pads to 8 decimals (``"0.01000000"``), Binance USD-M pads to the symbol's own
precision (``"7.6110"``, ``"813"``), Coinbase sends plain decimals without trailing zeros.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal


class Grid:
    """An increment such as ``0.05``, stored as ``mantissa * 10**-exponent`` (5, 2)."""

    __slots__ = ("decimals", "increment", "mantissa")

    def __init__(self, increment: Decimal | str) -> None:
        self.increment = Decimal(increment).normalize()
        sign, digits, exponent = self.increment.as_tuple()
        assert isinstance(exponent, int) and not sign and self.increment > 0, increment
        self.mantissa = int("".join(map(str, digits))) * (10**exponent if exponent > 0 else 1)
        self.decimals = max(0, -exponent)

    def fixed(self, units: int, decimals: int | None = None) -> str:
        """``units`` increments as text with exactly ``decimals`` decimals (default: the grid's own)."""
        places = self.decimals if decimals is None else decimals
        assert places >= self.decimals, "cannot show a finer grid with fewer decimals"
        digits = str(units * self.mantissa * 10 ** (places - self.decimals))
        if places == 0:
            return digits
        digits = digits.rjust(places + 1, "0")
        return f"{digits[:-places]}.{digits[-places:]}"

    def formatter(self, decimals: int | None = None, cache: bool = False, plain: bool = False) -> Callable[[int], str]:
        """A fast ``fixed`` (or ``plain``) for one number of decimals; ``cache`` remembers every text made
        (for prices, which repeat near the top of a book; not for sizes, which rarely do)."""
        places = self.decimals if decimals is None else decimals
        assert places >= self.decimals
        scale = self.mantissa * 10 ** (places - self.decimals)
        width = places + 1

        def fixed(units: int) -> str:
            digits = str(units * scale)
            if not places:
                return digits
            if len(digits) < width:
                digits = digits.rjust(width, "0")
            return f"{digits[:-places]}.{digits[-places:]}"

        make = fixed
        if plain and places:

            def make(units: int) -> str:
                return fixed(units).rstrip("0").rstrip(".")

        if not cache:
            return make
        texts: dict[int, str] = {}

        def cached(units: int) -> str:
            text = texts.get(units)
            if text is None:
                text = texts[units] = make(units)
            return text

        return cached

    def plain(self, units: int) -> str:
        """``units`` increments as the shortest exact text (``"68926.3"``, ``"0"``, ``"12"``)."""
        text = self.fixed(units)
        if "." in text:
            text = text.rstrip("0").rstrip(".")
        return text

    def value(self, units: int) -> Decimal:
        return Decimal(units * self.mantissa).scaleb(-self.decimals)
