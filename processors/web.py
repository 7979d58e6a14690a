"""The books over Faust's web server.

- ``GET /books``: every book this worker holds, with its health and the venue's last ids;
  ``recovered`` is false until the tables are recovered after the worker starts; ``positions``:
  records skipped as read again, rewinds past a gap, records lost to retention (``resume.py``).
- ``GET /books/{venue}/{symbol}?depth=N``: one book, levels best first as decimal strings
  (``[price, size]`` pairs), all of them without ``depth``; no levels unless the book is LIVE.
  ``symbol`` is the normalized one (``BTC-USDT``) or the venue's own (``BTCUSDT``).

With several workers, each holds the books of its partitions. A request for a book another
worker holds is redirected there (``307``, ``Location`` its URL: HTTP clients follow it), found
from the group's assignment as Faust's ``table_route`` does: the instrument key's partition
(murmur2, as the producers partition) and the worker that has it. That needs the normalized
symbol (the key); a venue symbol that is not here gets a 404.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import faust
from faust.web import Request, Response, View
from yarl import URL

from processors.book import Book
from processors.scaled import plain

if TYPE_CHECKING:
    from processors.books import BookAgent


def _summary(book: Book) -> dict[str, Any]:
    head = book.head
    _, bid, ask = book.top()
    return {
        "venue": head.venue,
        "market": head.market.value,
        "symbol": head.symbol,
        "venue_symbol": head.venue_symbol,
        "health": head.health.value,
        "detail": head.detail,
        "continuity_checked": book.rule.checked,
        "snapshot_id": head.snapshot_id,
        "last_update_id": head.last_id,
        "exchange_ts": head.exchange_ts,
        "receive_ts": head.receive_ts,
        "levels": {"bids": len(book.bids.levels), "asks": len(book.asks.levels)},
        "best_bid": [plain(bid[0]), plain(bid[1])] if bid else None,
        "best_ask": [plain(ask[0]), plain(ask[1])] if ask else None,
        "counters": vars(book.counters),
    }


def book_json(book: Book, depth: int | None) -> dict[str, Any]:
    bids, asks = book.depth(depth)
    return {
        **_summary(book),
        "bids": [[plain(p), plain(s)] for p, s in bids],
        "asks": [[plain(p), plain(s)] for p, s in asks],
    }


def register_views(app: faust.App, agent: BookAgent) -> None:
    def find(venue: str, symbol: str) -> Book | None:
        book = agent.state.get(f"{venue}:{symbol}")
        if book is None:  # the venue's own symbol
            book = next((b for b in agent.state.books.values()
                         if b.head.venue == venue and b.head.venue_symbol == symbol), None)  # fmt: skip
        return book

    def owner(key: str) -> URL | None:
        """The URL of the other worker holding ``key``'s partition, if one does."""
        try:
            url = app.router.key_store(agent.state.heads.name, key.encode())
        except LookupError:  # no assignment yet, or the partition is nobody's
            return None
        here = app.conf.canonical_url
        return None if (url.host, url.port) == (here.host, here.port) else url

    @app.page("/books/{venue}/{symbol}")
    class OneBook(View):
        async def get(self, request: Request, venue: str, symbol: str) -> Response:
            depth: int | None = None
            if "depth" in request.query:
                try:
                    depth = int(request.query["depth"])
                except ValueError:
                    depth = 0
                if depth < 1:
                    return self.json({"error": "depth must be a positive integer"}, status=400)
            book = find(venue, symbol)
            if book is None:
                elsewhere = owner(f"{venue}:{symbol}")
                if elsewhere is not None:
                    location = str(elsewhere.with_path(request.path).with_query(request.query))
                    return self.json({"location": location}, status=307, headers={"Location": location})
                return self.json({"error": f"no book {venue}:{symbol} on this worker"}, status=404)
            return self.json(book_json(book, depth))

    @app.page("/books")
    class AllBooks(View):
        async def get(self, request: Request) -> Response:
            books = [_summary(b) for _, b in sorted(agent.state.books.items())]
            return self.json({"recovered": agent.state.recovered, "books": books, "counters": agent.counters,
                              "positions": agent.state.positions.counters, "times": agent.commit.times})  # fmt: skip
