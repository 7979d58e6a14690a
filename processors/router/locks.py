"""One lock per order, kept only while somebody holds it or waits for it.

Every command of an order, and every stream report applied while a command works on it, runs
under the order's lock: two cancels of one order must not both find it open and both go to the
venue, and the second one's answer must start from the state the first one left.

A lock cannot be dropped when it merely looks free: ``asyncio.Lock.release`` wakes the next
waiter, which takes the lock only when it next runs, so in between ``locked()`` is False with a
waiter already chosen. Dropping the lock then gave the next command a fresh lock, and it ran
alongside the woken one (a kill -9 test caught a cancel answered twice so). The count of users,
holders and waiters, says when nobody needs the lock any more.
"""

from __future__ import annotations

import asyncio
from types import TracebackType


class _Entry:
    __slots__ = ("lock", "users")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        #: Holding it or waiting for it.
        self.users = 0


class _Hold:
    """``async with locks.hold(key)``: the key's lock, for the block."""

    __slots__ = ("_entry", "_key", "_locks")

    def __init__(self, locks: KeyedLocks, key: str) -> None:
        self._locks, self._key = locks, key
        self._entry: _Entry | None = None

    async def __aenter__(self) -> None:
        entries = self._locks._entries
        entry = entries.get(self._key)
        if entry is None:
            entry = entries[self._key] = _Entry()
        entry.users += 1
        self._entry = entry
        try:
            await entry.lock.acquire()
        except BaseException:  # canceled while waiting: no longer a user
            self._leave()
            raise

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._entry is not None
        self._entry.lock.release()
        self._leave()

    def _leave(self) -> None:
        entry = self._entry
        assert entry is not None
        entry.users -= 1
        if entry.users == 0:
            del self._locks._entries[self._key]


class KeyedLocks:
    """Locks by key (order id), made on first use and dropped when their last user leaves."""

    def __init__(self) -> None:
        self._entries: dict[str, _Entry] = {}

    def hold(self, key: str) -> _Hold:
        return _Hold(self, key)

    def busy(self, key: str) -> bool:
        """Whether somebody holds the key's lock or waits for it."""
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)
