"""The processors' own settings: ``TICKFLOW_PROCESSORS__*`` variables (or ``tickflow worker``
options); where Kafka and the registry are comes from tickflow's ``Settings`` as for every
other process."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from tickflow import topics
from tickflow.config import REPO_ROOT


class ProcessorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TICKFLOW_PROCESSORS__", extra="forbid")

    #: Faust app id: the consumer group, and the prefix of the changelog topics it creates.
    app_id: str = "tickflow-processors"
    #: Table store: ``rocksdb://`` (RocksDB through rocksdict: state survives a restart without
    #: reading the whole changelog again) or ``memory://`` (tests; rebuilt from the changelog).
    store: Literal["rocksdb://", "memory://"] = "rocksdb://"
    #: Faust's data directory (RocksDB files), one per app id inside it.
    data_dir: Path = REPO_ROOT / ".tickflow" / "processors"
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
    #: The order-book agent takes up to this many records at a time from its stream, and writes
    #: their table changes and outputs together (``processors/changelog.py``)...
    batch_max: int = Field(500, ge=1)
    #: ...or what arrived within this many seconds: the most a record waits before it is applied.
    batch_wait: float = Field(0.005, gt=0)

    def changelog_partitions(self) -> int:
        if self.partitions is not None:
            return self.partitions
        spec = topics.load_topics().get(self.book_topic) or topics.load_topics()[topics.BOOK]
        return spec.partitions
