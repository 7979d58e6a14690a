"""Every error tickflow raises on purpose, as one hierarchy.

Callers catch the branch they can act on (``CodecError`` to dead-letter a record,
``RegistryUnavailable`` to retry later, ``InfraError`` to print a message instead of a
traceback). Messages say what happened and what to do; they never carry secrets.
"""

from __future__ import annotations


class TickflowError(Exception):
    """Base class of every error tickflow raises on purpose."""


class ConfigError(TickflowError):
    """The configuration is invalid or incomplete."""


# --- local stack -------------------------------------------------------------------------------


class InfraError(TickflowError):
    """The local Kafka / registry stack could not be set up, started or stopped."""


class ToolMissing(InfraError):
    """A program the local stack needs (java, mvn) is not installed."""


class PortInUse(InfraError):
    """A port the local stack wants is taken by another process."""


class DownloadFailed(InfraError):
    """Maven could not resolve an artifact the local stack needs."""


class StartupFailed(InfraError):
    """A process of the local stack exited or did not answer in time."""


# --- schemas and codec -------------------------------------------------------------------------


class SchemaError(TickflowError):
    """A schema file is invalid, or a Python event type does not match its schema."""


class CodecError(TickflowError):
    """A record could not be encoded or decoded."""


class MalformedPayload(CodecError):
    """The bytes are not a Confluent-framed Avro record (too short, wrong magic byte, bad Avro)."""


class UnknownSchemaId(CodecError):
    """The payload names a schema id the registry does not know."""


class RecordMismatch(CodecError):
    """A record does not match its schema (missing field, wrong type, value out of range)."""


class UnknownEventType(CodecError):
    """The event type has no schema in ``schemas/`` (encode) or no Python type (decode)."""


# --- schema registry ---------------------------------------------------------------------------


class RegistryError(TickflowError):
    """The schema registry answered with an error."""


class RegistryUnavailable(RegistryError):
    """The schema registry could not be reached (after retrying)."""


class IncompatibleSchema(RegistryError):
    """The registry refused a schema because it breaks the subject's compatibility rule."""


# --- Kafka -------------------------------------------------------------------------------------


class KafkaError(TickflowError):
    """A Kafka operation failed."""


class BrokerUnavailable(KafkaError):
    """No broker of the cluster could be reached (after retrying)."""


class DeliveryFailed(KafkaError):
    """Records could not be delivered to Kafka within the delivery timeout."""

    def __init__(self, message: str, failures: list[tuple[str, bytes | None, str]]) -> None:
        super().__init__(message)
        #: ``(topic, key, reason)`` of every record that was not delivered.
        self.failures = failures


class UnknownTopic(KafkaError):
    """The topic does not exist on the cluster."""


class OffsetOutOfRange(KafkaError):
    """The requested offset or timestamp lies outside what the topic holds."""


# --- venue feeds -------------------------------------------------------------------------------


class FeedError(TickflowError):
    """A venue feed sent something tickflow cannot use."""


class MalformedFrame(FeedError):
    """A frame that is not what the venue documents (bad JSON, missing fields); counted and skipped."""
