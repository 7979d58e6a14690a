"""Prices and sizes as the agents keep them: integers at the contract's scale (decimal(38, 18),
``schemas/tickflow.PriceLevel.avsc``), i.e. the value times 10**18, exactly.

That is what is on the wire (an Avro decimal is its unscaled integer), so the compiled reader
(``AvroCodec.decode_fields``) hands the agents these integers without making a ``Decimal``;
sums, comparisons and dict lookups on them are exact and cheap. ``Decimal`` is made only for
what goes out (best bid/offer, depth, klines).

Every conversion here is exact whatever the number of digits: ``Decimal`` arithmetic such as
``scaleb`` rounds to the context's 28 digits, which a large quote volume at scale 18 exceeds.
"""

from __future__ import annotations

from decimal import Context, Decimal, Inexact

#: Decimal places of the contract's prices and sizes.
DIGITS = 18
#: 1 at scale 18.
UNIT = 10**DIGITS
#: Moving the point of an integer's Decimal is exact in any context with enough digits; this one
#: has far more than the contract's 38 and traps what would not be exact.
_EXACT = Context(prec=1000, traps=[Inexact])


def units(value: Decimal) -> int:
    """``value`` at scale 18, exactly; ``ValueError`` if it has more than 18 decimal places."""
    sign, digits, exponent = value.as_tuple()
    if not isinstance(exponent, int):
        raise ValueError(f"{value} is not a finite number")
    coefficient = int("".join(map(str, digits))) if digits else 0
    shift = exponent + DIGITS
    if shift >= 0:
        n = coefficient * 10**shift
    else:
        n, rest = divmod(coefficient, 10**-shift)
        if rest:
            raise ValueError(f"{value} has more than {DIGITS} decimal places")
    return -n if sign else n


def to_decimal(n: int) -> Decimal:
    """The ``Decimal`` of ``n`` at scale 18 (exponent -18), exactly."""
    return Decimal(n).scaleb(-DIGITS, _EXACT)


def plain(n: int) -> str:
    """``n`` at scale 18 as plain decimal text without trailing zeros (``65000.01``,
    ``0.00000012``, ``100``): one text for one number, as a table key must be."""
    whole, fraction = divmod(abs(n), UNIT)
    text = f"{whole}.{fraction:018d}".rstrip("0") if fraction else str(whole)
    return "-" + text if n < 0 else text


def parse_plain(text: str) -> int:
    """The integer at scale 18 of plain decimal text (``plain``'s inverse; also takes any text
    ``Decimal`` takes, exactly)."""
    whole, point, fraction = text.partition(".")
    if whole.lstrip("-").isdigit() and (not point or (fraction.isdigit() and len(fraction) <= DIGITS)):
        n = abs(int(whole)) * UNIT + (int(fraction.ljust(DIGITS, "0")) if fraction else 0)
        return -n if whole.startswith("-") else n
    return units(Decimal(text))
