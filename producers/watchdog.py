"""A traffic watchdog per subscription (channel and symbol).

A subscription that stops delivering while the connection itself stays busy is a silent hole
the connection's own silence timeout never sees (one stalled channel among a hundred live
ones). The watchdog escalates: a subscription silent for its channel's timeout is subscribed
again; if it is still silent one timeout later, the whole connection is reconnected.

Timeouts are per channel, because quiet is normal on some: a trade stream of an illiquid
symbol can be silent for minutes, while Binance's kline stream pushes every two seconds
whatever happens. A channel without a timeout is not watched.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class WatchdogVerdict:
    resubscribe: list[str] = field(default_factory=list)
    reconnect: bool = False
    reason: str = ""


class TrafficWatchdog:
    def __init__(self, timeout_of: Callable[[str], float | None]) -> None:
        #: Seconds of silence allowed per subscription key (None: not watched).
        self.timeout_of = timeout_of
        #: Key -> receive time (µs) of its last frame; written on the hot path, so a plain dict.
        self.last_seen: dict[str, int] = {}
        self._since: dict[str, int] = {}  # key -> when it became active (µs): silence counts from then
        self._resubscribed: dict[str, int] = {}  # key -> when we subscribed it again (µs)

    def activated(self, keys: list[str], now_us: int) -> None:
        for key in keys:
            self._since[key] = now_us

    def reset(self) -> None:
        """A new connection: nothing is active until subscribed again."""
        self.last_seen.clear()
        self._since.clear()
        self._resubscribed.clear()

    def check(self, now_us: int) -> WatchdogVerdict:
        verdict = WatchdogVerdict()
        for key, since in self._since.items():
            timeout = self.timeout_of(key)
            if timeout is None:
                continue
            seen = self.last_seen.get(key, 0)
            resubscribed = self._resubscribed.get(key)
            if resubscribed is not None:
                if seen > resubscribed:
                    del self._resubscribed[key]  # it came back
                elif (now_us - resubscribed) / 1e6 >= timeout:
                    verdict.reconnect = True
                    silent = (now_us - max(seen, since)) / 1e6
                    verdict.reason = f"{key}: no data for {silent:.0f}s, even after subscribing again"
                continue
            if (now_us - max(seen, since)) / 1e6 >= timeout:
                self._resubscribed[key] = now_us
                verdict.resubscribe.append(key)
        return verdict
