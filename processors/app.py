"""The processors' Faust app, for ``faust -A processors.app worker`` (``tickflow worker`` builds
the same app through ``processors.worker.create_app``).

Settings: ``TICKFLOW_CONFIG`` / ``TICKFLOW_*`` for Kafka and the registry,
``TICKFLOW_PROCESSORS__*`` for the app (``processors/settings.py``).
"""

from __future__ import annotations

from processors.settings import ProcessorSettings
from processors.worker import create_app
from tickflow.config import load_settings

app = create_app(load_settings(), ProcessorSettings())
