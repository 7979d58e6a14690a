"""Binance's documented rules for bridging depth diffs onto a REST snapshot.

Spot (``/api/v3/depth`` + ``<symbol>@depth``): drop diffs with ``u <= lastUpdateId``; the first
applied diff has ``U <= lastUpdateId + 1 <= u``; then every ``U`` is the previous ``u + 1``.

USD-M (``/fapi/v1/depth`` + ``<symbol>@depth``): drop diffs with ``u < lastUpdateId``; the first
applied diff has ``U <= lastUpdateId <= u`` (or ``pu == lastUpdateId``: it directly follows the
snapshot); then every ``pu`` is the previous ``u``. Update ids
are shared across symbols, so ``U`` jumps by more than one between two diffs of one symbol.
"""

from __future__ import annotations

from producers.book_sync import DepthDiff


class SpotBridgeRule:
    #: Spot ids count one symbol's updates: a gap's size is known.
    ids_per_instrument = True

    def stale(self, diff: DepthDiff, snapshot_id: int) -> bool:
        return diff.last_id <= snapshot_id

    def bridges(self, diff: DepthDiff, snapshot_id: int) -> bool:
        return diff.first_id <= snapshot_id + 1 <= diff.last_id

    def continues(self, diff: DepthDiff, previous: DepthDiff) -> bool:
        return diff.first_id == previous.last_id + 1

    def expected(self, previous: DepthDiff) -> int:
        return previous.last_id + 1

    def received(self, diff: DepthDiff) -> int:
        return diff.first_id


class UsdmBridgeRule:
    #: USD-M ids are shared across symbols: a gap's size is not known.
    ids_per_instrument = False

    def stale(self, diff: DepthDiff, snapshot_id: int) -> bool:
        return diff.last_id < snapshot_id

    def bridges(self, diff: DepthDiff, snapshot_id: int) -> bool:
        # The documented rule, or a diff whose ``pu`` is the snapshot's id: it follows the
        # snapshot's last update directly (a snapshot taken just after a diff went out: the
        # stream's next diff starts after it, and the documented rule alone would refuse every
        # snapshot of a quiet, caught-up book).
        return diff.first_id <= snapshot_id <= diff.last_id or diff.prev_id == snapshot_id

    def continues(self, diff: DepthDiff, previous: DepthDiff) -> bool:
        return diff.prev_id == previous.last_id

    def expected(self, previous: DepthDiff) -> int:
        return previous.last_id

    def received(self, diff: DepthDiff) -> int:
        return diff.prev_id if diff.prev_id is not None else diff.first_id
