"""How Coinbase's level2 messages relate to each other.

Coinbase numbers the messages of a connection (``sequence_num``, every channel together), not
the updates of a book, so continuity is checked per connection by the stream
(``stream.py``): a jump resets every book of the connection before the next message reaches
any of them. Within a book, then, every update that follows its snapshot on the same connection
continues it, and updates numbered before the snapshot are stale.
"""

from __future__ import annotations

from producers.book_sync import DepthDiff


class CoinbaseBookRule:
    #: Sequence numbers count the connection's messages: a gap's size in book updates is unknown.
    ids_per_instrument = False

    def stale(self, diff: DepthDiff, snapshot_id: int) -> bool:
        return diff.last_id <= snapshot_id

    def bridges(self, diff: DepthDiff, snapshot_id: int) -> bool:
        return diff.first_id > snapshot_id

    def continues(self, diff: DepthDiff, previous: DepthDiff) -> bool:
        return diff.first_id > previous.last_id  # the connection's sequence was checked already

    def expected(self, previous: DepthDiff) -> int:
        return previous.last_id + 1

    def received(self, diff: DepthDiff) -> int:
        return diff.first_id
