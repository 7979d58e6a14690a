"""Events about the pipeline itself."""

from __future__ import annotations

from tickflow.events.base import Event


class DeadLetter(Event, kw_only=True):
    """A record a consumer could not process; the original bytes are kept unchanged."""

    avro_name = "tickflow.DeadLetter"
    key_fields = ("source_topic",)
    source_topic: str
    source_partition: int
    source_offset: int
    source_key: bytes | None = None
    source_value: bytes | None = None
    error_type: str
    reason: str
    consumer: str
    ts: int
