"""The processors' own settings: ``TICKFLOW_PROCESSORS__*`` variables (or ``tickflow worker``
options); where Kafka and the registry are comes from tickflow's ``Settings`` as for every
other process."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from processors.kline import parse_interval
from tickflow import topics
from tickflow.config import REPO_ROOT


class ProcessorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TICKFLOW_PROCESSORS__", extra="forbid")

    #: Faust app id: the consumer group, and the prefix of the changelog topics it creates.
    app_id: str = "tickflow-processors"
    #: Table store: ``rocksdb://`` (RocksDB through rocksdict, the default: a clean restart reads
    #: nothing back; after a ``kill -9`` its tables are discarded and rebuilt from the changelog,
    #: ``local_state.py``) or ``memory://`` (rebuilt from the changelog at each start). Both are
    #: exact after a ``kill -9`` (``tests/integration/test_processors_crash.py``).
    store: Literal["rocksdb://", "memory://"] = "rocksdb://"
    #: Faust's data directory (RocksDB files), one per app id inside it.
    data_dir: Path = REPO_ROOT / ".tickflow" / "processors"
    #: Seconds without a heartbeat before the group gives a worker's partitions to the others
    #: (Faust's default is 60: a killed worker's partitions would wait a minute for anyone).
    session_timeout: float = Field(10.0, ge=6.0)
    web_host: str = "127.0.0.1"
    web_port: int = Field(6066, ge=1, le=65535)
    #: Partitions of the changelog topics; they must equal the book topic's (Faust writes a
    #: table change to the partition of the record that caused it). ``None``: from topics.yaml.
    partitions: int | None = None
    #: Replication factor of the changelog topics Faust creates (3 on a production cluster).
    replication_factor: int = Field(1, ge=1)
    book_topic: str = topics.BOOK
    bbo_topic: str = topics.BOOK_BBO
    depth_topic: str = topics.BOOK_DEPTH
    dead_letter_topic: str = topics.DEAD_LETTER
    #: Levels a side in each depth record.
    depth_levels: int = Field(10, ge=1)
    #: Seconds between depth records (for each book that changed meanwhile).
    depth_interval: float = Field(1.0, gt=0)
    #: The kline agent: trades in, the venues' klines in (for the cross-check), derived klines out.
    trade_topic: str = topics.TRADES
    kline_topic: str = topics.KLINES
    derived_kline_topic: str = topics.KLINES_DERIVED
    #: Kline intervals (``<n>s``, ``<n>m``, ``<n>h``, ``<n>d``), in event time, aligned to the epoch.
    kline_intervals: list[str] = ["1s", "1m", "5m", "1h"]
    #: Seconds a window stays open after its close time (in event time) for trades arriving late.
    kline_grace: float = Field(2.0, ge=0)
    #: Seconds of event time an instrument may be quiet while others on its partition go on
    #: before its windows are closed on the partition's time (so a quiet instrument's last kline
    #: closes without waiting for its next trade).
    kline_idle_close: float = Field(30.0, gt=0)
    #: Seconds (event time, past the watermark) closed klines are kept for corrections; a trade
    #: older than that is dead-lettered as too late (and counted), not silently dropped.
    kline_correction_horizon: float = Field(600.0, gt=0)
    #: Seconds of event time between in-progress updates of an open kline; ``None``: closed only.
    kline_updates: float | None = Field(None, gt=0)
    #: Seconds of the derived kline topic read back after recovery: closed klines published just
    #: before a crash, whose table writes were lost, are not published again (longer than the
    #: time from a kline's delivery to its table write reaching Kafka, which is well under one).
    kline_published_lookback: float = Field(300.0, gt=0)

    @field_validator("kline_intervals")
    @classmethod
    def _intervals(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("at least one kline interval")
        for label in value:
            parse_interval(label)
        return value

    #: The order-book agent writes the changes of at most this many records at a time (and of
    #: fewer when no more are waiting: ``processors/books.py``).
    batch_max: int = Field(500, ge=1)
    #: ...and, when no more are waiting, writes once its previous batch is written (group commit:
    #: it gathers records meanwhile) and it is at least this many seconds old (a linger, from its
    #: first record). Off (0) by default: records come a partition's fetch at a time, and group
    #: commit alone sizes the batches to the rate (``bench/processors_bench.py latency``: with a
    #: 5 ms linger the worker fell behind at 2,000 and 5,000 records/s, without it kept up, and
    #: p99 at 1,000/s went from 101 to 75 ms).
    batch_wait: float = Field(0.0, ge=0)

    def changelog_partitions(self) -> int:
        if self.partitions is not None:
            return self.partitions
        spec = topics.load_topics().get(self.book_topic) or topics.load_topics()[topics.BOOK]
        return spec.partitions
