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


# --- venue trading -----------------------------------------------------------------------------


class VenueError(TickflowError):
    """A venue's trading API answered with an error, or could not be asked.

    ``reason`` is the contract's ``RejectReason`` symbol that an order event carries;
    ``venue_message`` is the venue's own code and message, as sent (never a secret: venues do not
    echo keys or signatures); ``retryable`` says whether the same request may be sent again.
    """

    reason: str = "VENUE_ERROR"
    retryable: bool = False

    def __init__(self, message: str, venue_message: str | None = None) -> None:
        super().__init__(message)
        self.venue_message = venue_message


class OrderRejected(VenueError):
    """The venue refused the request: nothing happened there, and sending it again will not help."""

    reason = "INVALID_ORDER"


class InsufficientFunds(OrderRejected):
    reason = "INSUFFICIENT_FUNDS"


class InvalidOrder(OrderRejected):
    """A parameter or filter the venue refused (tick size, lot size, notional, reduce-only...)."""

    reason = "INVALID_ORDER"


class DuplicateOrder(OrderRejected):
    """The client order id is already in use at the venue: the order may exist; query it."""

    reason = "DUPLICATE"


class UnknownOrder(OrderRejected):
    """The venue has no order by that id (or it can no longer be canceled or amended)."""

    reason = "UNKNOWN_ORDER"


class AuthFailed(OrderRejected):
    """Bad key, signature or permissions. Retrying with the same credentials cannot help."""

    reason = "AUTH_FAILED"


class ReplaceFailed(OrderRejected):
    """An amend made as cancel-replace (venues without a native amend) did not place the new
    order. ``old_canceled``: the old order was canceled (a partial failure) or still stands;
    ``reason`` is the contract's reason for the new order's refusal."""

    def __init__(self, message: str, venue_message: str | None, *, old_canceled: bool, reason: str) -> None:
        super().__init__(message, venue_message)
        self.old_canceled = old_canceled
        self.reason = reason


class RateLimited(VenueError):
    """The venue said slow down (429/418): nothing was executed; wait ``retry_after`` seconds."""

    reason = "RATE_LIMITED"
    retryable = True

    def __init__(self, message: str, venue_message: str | None = None, retry_after: float = 1.0) -> None:
        super().__init__(message, venue_message)
        self.retry_after = retry_after


class VenueUnavailable(VenueError):
    """The request certainly did not reach the venue's matching (no connection, a clock the venue
    refused, a 5xx on a read): safe to send again."""

    retryable = True


class UnknownOutcome(VenueError):
    """A state-changing request may or may not have been executed (a timeout, a 5xx, a connection
    lost mid-request). Never resend blindly: ask the venue for the order first."""

    reason = "VENUE_ERROR"
