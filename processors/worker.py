"""Building and running the processors' Faust app.

``create_app`` is the one place the app is made: ``processors.app`` (for ``faust -A
processors.app worker``) and ``tickflow worker`` both call it, so both run the same agents with
the same settings. Kafka and the registry come from tickflow's ``Settings``; the rest from
``ProcessorSettings``.
"""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable
from typing import Any

import faust
from faust import transport as faust_transport

from processors import consumer
from processors.local_state import LocalStateGuard
from processors.resume import SourcePositions
from processors.settings import ProcessorSettings
from tickflow.codec import AvroCodec
from tickflow.config import KafkaSettings, Settings
from tickflow.errors import ConfigError
from tickflow.registry import SchemaRegistry


def broker_urls(kafka: KafkaSettings) -> list[str]:
    return [f"kafka://{server.strip()}" for server in kafka.bootstrap_servers.split(",") if server.strip()]


def broker_credentials(kafka: KafkaSettings) -> Any:
    """Faust's credentials for the security settings every tickflow client shares."""
    if kafka.security_protocol == "PLAINTEXT":
        return None
    context = None
    if kafka.security_protocol in ("SSL", "SASL_SSL"):
        context = ssl.create_default_context(cafile=kafka.ssl_ca_location)
        if kafka.ssl_certificate_location:
            password = kafka.ssl_key_password.get_secret_value() if kafka.ssl_key_password else None
            context.load_cert_chain(kafka.ssl_certificate_location, kafka.ssl_key_location, password)
    if kafka.security_protocol == "SSL":
        return faust.SSLCredentials(context)
    if kafka.sasl_mechanism not in ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"):
        raise ConfigError(f"the processors do not support SASL mechanism {kafka.sasl_mechanism} yet")
    password = kafka.sasl_password.get_secret_value() if kafka.sasl_password else None
    return faust.SASLCredentials(
        username=kafka.sasl_username, password=password, ssl_context=context, mechanism=kafka.sasl_mechanism
    )


class ProcessorsApp(faust.App):
    """Faust's app, plus the local state guard (``local_state.py``: the RocksDB tables of a
    worker that did not stop cleanly are rebuilt from the changelog, not trusted) and its own
    consumer: resuming where the tables are, settling the agents at a rebalance (``flow.py``),
    with a leaner per-record path (``consumer.py``)."""

    local_state: LocalStateGuard | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: One per agent: finishes what the agent was handed (writes, acknowledgements), called by
        #: the consumer when a rebalance or a stop suspends the streams (``flow.py``).
        self.agent_settlers: list[Callable[[], Awaitable[None]]] = []
        #: The agents' source positions (``resume.py``): where their streams resume.
        self.source_positions: list[SourcePositions] = []
        #: Topics whose agents take a partition's fetched records as one event, a ``RecordBatch``
        #: (``consumer.py``), rather than one event a record.
        self.batch_topics: set[str] = set()

    def _new_transport(self) -> Any:
        # Faust picks the transport class from the broker URL's scheme; the consumer and the
        # conductor come from that class. Faust's aiokafka transport (the one these consumers
        # were written against) is replaced by ``consumer.LeanTransport``: batch delivery, a
        # leaner per-record path, resuming where the tables are (``flow.py``). There is no other
        # Kafka transport in Faust 0.15.
        if faust_transport.by_url(self.conf.broker_consumer[0]) is not consumer.REPLACES:
            raise ConfigError(f"the processors run on Faust's aiokafka transport, not {self.conf.broker_consumer[0]}")
        transport = consumer.LeanTransport
        return transport(self.conf.broker_consumer, self)

    async def on_start(self) -> None:
        if self.local_state is not None:  # before the tables (children of the app) open their stores
            self.local_state.open()
        await super().on_start()

    async def on_shutdown(self) -> None:
        await super().on_shutdown()
        # Every child (consumer, producer, tables and their stores) has stopped by now.
        if self.local_state is not None and not self._crashed.is_set():
            self.local_state.close()


def create_app(settings: Settings, processors: ProcessorSettings | None = None) -> faust.App:
    """The Faust app with every processor agent declared on it."""
    from processors.books import BookAgent
    from processors.dashboard import register_dashboard
    from processors.health import register_health_views
    from processors.klines import KlineAgent

    processors = processors or ProcessorSettings()
    datadir = processors.data_dir / processors.app_id
    datadir.mkdir(parents=True, exist_ok=True)  # Faust does not make it
    app = ProcessorsApp(
        processors.app_id,
        broker=broker_urls(settings.kafka),
        broker_credentials=broker_credentials(settings.kafka),
        store=processors.store,
        broker_session_timeout=processors.session_timeout,
        datadir=str(datadir),
        topic_partitions=processors.changelog_partitions(),
        topic_replication_factor=processors.replication_factor,
        web_host=processors.web_host,
        web_port=processors.web_port,
        web_enabled=True,
        autodiscover=False,
        # Agents are declared by create_app, not by importing modules.
        origin="processors.app",
    )
    if processors.store == "rocksdb://":
        app.local_state = LocalStateGuard(datadir, app.conf.tabledir)
    codec = AvroCodec(SchemaRegistry(settings.registry))
    app.tickflow_books = BookAgent(app, codec, processors)  # type: ignore[attr-defined]
    app.tickflow_klines = KlineAgent(app, codec, processors, settings.kafka)  # type: ignore[attr-defined]
    register_health_views(app)
    register_dashboard(app)
    return app


def run_worker(app: faust.App, loglevel: str = "info", settings: Settings | None = None) -> None:
    """Run a worker of ``app`` until SIGINT/SIGTERM (what ``faust -A ... worker`` does). Logging
    is tickflow's (``tickflow/logs.py``: text or JSON, secrets redacted), not Faust's own."""
    from faust.worker import Worker

    from tickflow.logs import configure_logging, settings_secrets

    configure_logging(loglevel.upper(), secrets=settings_secrets(settings))
    worker = Worker(app, loglevel=loglevel, override_logging=False)
    # At WARN and above Faust adds a terminal spinner that sets the root logger to DEBUG, so that
    # every library's debug call (aiokafka logs each record sent) builds a log record: off.
    worker.spinner = None
    worker.execute_from_commandline()
