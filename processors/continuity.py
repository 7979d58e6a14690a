"""Continuity rules of each venue's book records, one class per venue, in this one place.

A rule answers one question: does this delta follow the record applied before it (a snapshot
or a delta) with nothing missed? It reads only the venue's own ids as the producer published
them (``first_update_id``, ``last_update_id``, ``prev_update_id``), so the agent re-checks the
producer instead of trusting it: a record lost or reordered anywhere between the venue and the
agent shows up here.

- Binance spot: ``U <= snapshot + 1 <= u`` for the first delta, then ``U == previous u + 1``.
- Binance USD-M: ``U <= snapshot <= u`` (or ``pu == snapshot``) for the first delta, then
  ``pu == previous u`` (ids are shared across symbols, so ``U`` jumps).
- Coinbase: book records carry the connection's ``sequence_num`` and the previous book record's
  (of the same product) as ``prev_update_id``: every delta, the first after a snapshot too,
  must name the last id applied.

A delta that ends at or before the last id applied is a duplicate (a record read again after a
restart, before the consumer's offset was committed): skipped, so replaying is harmless.

A venue without a rule here is ``Unchecked``: its records are applied as they come and only
the producer's gap markers and the crossed-book check protect the book (the ``/books`` listing
says so). Checksums: a rule that can recompute the venue's checksum from the book overrides
``checksum``; none of the venues produced so far carries one (Kraken and OKX will).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from processors.book_records import BookRecord


@dataclass(frozen=True)
class Break:
    """A delta that does not continue the book: what id was expected, what arrived."""

    expected: int | None
    received: int | None
    detail: str


class Continuity:
    """The base rule: nothing is checked (see ``Unchecked``)."""

    #: False where the agent cannot verify continuity for the venue.
    checked = True

    def check(self, last_id: int, after_snapshot: bool, delta: BookRecord) -> Break | None:
        """``None`` if ``delta`` follows the record whose last id is ``last_id`` (a snapshot if
        ``after_snapshot``), else what broke."""
        raise NotImplementedError

    def duplicate(self, last_id: int, after_snapshot: bool, delta: BookRecord) -> bool:
        """``delta`` is covered by what was applied already (a record read again after a restart,
        or sent twice): skipped, not a break. By default: its last id is not past ``last_id``."""
        return delta.last_update_id is not None and delta.last_update_id <= last_id

    def checksum(self, bids: Mapping[int, int], asks: Mapping[int, int]) -> int | None:
        """The venue's checksum of the book (levels price -> size, integers at scale 18:
        ``processors/scaled.py``), or ``None`` where the venue has none we can compute."""
        return None


class BinanceSpot(Continuity):
    def check(self, last_id: int, after_snapshot: bool, delta: BookRecord) -> Break | None:
        first, last = delta.first_update_id, delta.last_update_id
        if first is None or last is None:
            return Break(last_id + 1, None, "delta without first/last update id (U/u)")
        if after_snapshot:
            if first <= last_id + 1 <= last:
                return None
            return Break(last_id + 1, first, f"delta U={first} u={last} does not bridge snapshot {last_id}")
        if first == last_id + 1:
            return None
        return Break(last_id + 1, first, f"delta U={first} does not follow u={last_id}")


class BinanceUsdm(Continuity):
    def duplicate(self, last_id: int, after_snapshot: bool, delta: BookRecord) -> bool:
        # The first delta after a snapshot may end exactly at the snapshot's id (U <= id <= u).
        last = delta.last_update_id
        return last is not None and (last < last_id if after_snapshot else last <= last_id)

    def check(self, last_id: int, after_snapshot: bool, delta: BookRecord) -> Break | None:
        first, last, prev = delta.first_update_id, delta.last_update_id, delta.prev_update_id
        if after_snapshot:
            # Binance's rule is U <= id <= u; a delta whose pu is the snapshot's id follows it
            # just as exactly (the snapshot was taken right at the end of the previous delta).
            if (first is not None and last is not None and first <= last_id <= last) or prev == last_id:
                return None
            return Break(last_id, first, f"delta U={first} u={last} does not bridge snapshot {last_id}")
        if prev == last_id:
            return None
        return Break(last_id, prev, f"delta pu={prev} does not follow u={last_id}")


class Coinbase(Continuity):
    def check(self, last_id: int, after_snapshot: bool, delta: BookRecord) -> Break | None:
        if delta.prev_update_id == last_id:
            return None
        return Break(
            last_id, delta.prev_update_id, f"delta names {delta.prev_update_id} as the previous record, not {last_id}"
        )


class Unchecked(Continuity):
    checked = False

    def duplicate(self, last_id: int, after_snapshot: bool, delta: BookRecord) -> bool:
        return False

    def check(self, last_id: int, after_snapshot: bool, delta: BookRecord) -> Break | None:
        return None


RULES: dict[str, Continuity] = {
    "binance-spot": BinanceSpot(),
    "binance-usdm": BinanceUsdm(),
    "coinbase": Coinbase(),
}

_UNCHECKED = Unchecked()


def rule_for(venue: str) -> Continuity:
    """The venue's rule, ``Unchecked`` for a venue without one."""
    return RULES.get(venue, _UNCHECKED)
