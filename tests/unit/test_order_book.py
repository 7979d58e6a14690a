"""The generic order book (Decimal levels, best price through a heap)."""

from __future__ import annotations


def test_the_generic_book_stays_proportional_to_its_levels_under_churn() -> None:
    """Deep levels that come and go must not pile up in the best-price heap (a long run's
    memory would grow without bound)."""
    import random
    from decimal import Decimal

    from producers.book_sync import OrderBook

    rng, book = random.Random(1), OrderBook()
    for _ in range(50_000):
        price = Decimal(100 + rng.randint(1, 400)) / 10
        book.apply([(price, Decimal(rng.choice([0, 0, 1, 2])))], [])
    side = book._bids
    assert len(side.heap) <= 2 * len(side.levels) + 64
    assert book.best_bid() == (max(book.bids), book.bids[max(book.bids)])
