"""The processors' Faust app as declared (no Kafka needed to declare it): one agent on the book
topic, two tables partitioned like it, the web routes, settings from the environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from processors.settings import ProcessorSettings
from processors.worker import broker_credentials, broker_urls, create_app
from tickflow.config import KafkaSettings, Settings
from tickflow.topics import load_topics


def test_the_app_declares_the_book_agent_its_tables_and_routes(tmp_path: Path) -> None:
    settings = Settings(kafka=KafkaSettings(bootstrap_servers="k1:9093, k2:9093"))
    app = create_app(settings, ProcessorSettings(app_id="t-app", store="memory://", data_dir=tmp_path, web_port=6099))
    assert [str(u) for u in app.conf.broker] == ["kafka://k1:9093", "kafka://k2:9093"]
    assert list(app.agents) == ["books", "klines"] and app.agents["books"].channel.get_topic_name() == "tickflow.book"
    assert app.agents["klines"].channel.topics == ("tickflow.trades", "tickflow.klines")
    partitions = load_topics()["tickflow.book"].partitions
    assert load_topics()["tickflow.trades"].partitions == load_topics()["tickflow.klines"].partitions == partitions
    assert {name: t.partitions for name, t in app.tables.items()} == {
        "book-levels": partitions,
        "book-heads": partitions,
        "kline-heads": partitions,
        "kline-closed": partitions,
    }
    assert all(t.changelog_topic.get_topic_name() == f"t-app-{t.name}-changelog" for t in app.tables.values())
    routes = {(r.method, r.resource.canonical) for r in app.web.web_app.router.routes()}
    assert {("GET", "/books"), ("GET", "/books/{venue}/{symbol}"), ("GET", "/klines")} <= routes
    assert (tmp_path / "t-app").is_dir() and app.conf.web_port == 6099


def test_settings_come_from_tickflow_processors_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TICKFLOW_PROCESSORS__STORE", "memory://")
    monkeypatch.setenv("TICKFLOW_PROCESSORS__BOOK_TOPIC", "other.book")
    monkeypatch.setenv("TICKFLOW_PROCESSORS__DEPTH_INTERVAL", "0.25")
    s = ProcessorSettings()
    assert (s.store, s.book_topic, s.depth_interval) == ("memory://", "other.book", 0.25)
    assert s.changelog_partitions() == load_topics()["tickflow.book"].partitions  # a topic not in topics.yaml
    monkeypatch.setenv("TICKFLOW_PROCESSORS__KLINE_INTERVALS", '["1m", "15m"]')
    assert ProcessorSettings().kline_intervals == ["1m", "15m"]
    monkeypatch.setenv("TICKFLOW_PROCESSORS__KLINE_INTERVALS", '["1m", "90x"]')
    with pytest.raises(ValueError, match="90x"):
        ProcessorSettings()
    monkeypatch.delenv("TICKFLOW_PROCESSORS__KLINE_INTERVALS")
    monkeypatch.setenv("TICKFLOW_PROCESSORS__STORE", "redis://")
    with pytest.raises(ValueError, match="store"):
        ProcessorSettings()


def test_broker_security_maps_to_faust_credentials() -> None:
    assert broker_credentials(KafkaSettings()) is None
    sasl = broker_credentials(
        KafkaSettings(
            security_protocol="SASL_PLAINTEXT", sasl_mechanism="SCRAM-SHA-512", sasl_username="u", sasl_password="p"
        )
    )
    assert (sasl.username, sasl.password, sasl.mechanism.value) == ("u", "p", "SCRAM-SHA-512")
    assert broker_urls(KafkaSettings(bootstrap_servers="a:1")) == ["kafka://a:1"]
