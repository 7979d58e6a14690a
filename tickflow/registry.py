"""A client for any Confluent-compatible schema registry, with a local cache.

Speaks only the Confluent REST API (``/subjects``, ``/schemas/ids``, ``/config``), so the
registry is one URL away from Apicurio's ``/apis/ccompat/v7``, Confluent, Karapace or Redpanda.
Schemas are immutable per id, so lookups by id are cached forever; registrations are cached per
(subject, schema). An unreachable registry is retried with backoff for
``RegistrySettings.retry_seconds`` and then reported as ``RegistryUnavailable``.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any, Literal

import httpx

from tickflow.config import RegistrySettings
from tickflow.errors import IncompatibleSchema, RegistryError, RegistryUnavailable, UnknownSchemaId

log = logging.getLogger(__name__)

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
Compatibility = Literal[
    "NONE", "BACKWARD", "BACKWARD_TRANSITIVE", "FORWARD", "FORWARD_TRANSITIVE", "FULL", "FULL_TRANSITIVE"
]

# Confluent error codes (the ccompat API uses the same ones).
_SUBJECT_NOT_FOUND = 40401
_SCHEMA_NOT_FOUND = 40403


class SchemaRegistry:
    """Registers and resolves Avro schemas; thread-safe for reads of the caches."""

    def __init__(self, settings: RegistrySettings | None = None) -> None:
        self.settings = settings or RegistrySettings()
        auth = None
        if self.settings.basic_auth_user:
            password = self.settings.basic_auth_password
            auth = (self.settings.basic_auth_user, password.get_secret_value() if password else "")
        self._http = httpx.Client(
            base_url=self.settings.url.rstrip("/"),
            auth=auth,
            timeout=httpx.Timeout(5.0, connect=2.0),
            verify=self.settings.ssl_ca_location or True,
            headers={"Accept": CONTENT_TYPE},
        )
        self._by_id: dict[int, str] = {}
        self._ids: dict[tuple[str, str], int] = {}

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> SchemaRegistry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- requests ------------------------------------------------------------------------------

    def _request(self, method: str, path: str, body: Any = None) -> httpx.Response:
        """One request, retrying connection failures and 5xx until ``retry_seconds`` run out."""
        deadline = time.monotonic() + self.settings.retry_seconds
        delay = 0.1
        while True:
            try:
                response = self._http.request(
                    method,
                    path,
                    content=None if body is None else json.dumps(body),
                    headers={"Content-Type": CONTENT_TYPE} if body is not None else None,
                )
                if response.status_code < 500:
                    return response
                problem = f"HTTP {response.status_code}: {response.text[:200]}"
            except httpx.TransportError as exc:
                problem = f"{type(exc).__name__}: {exc}"
            if time.monotonic() + delay > deadline:
                raise RegistryUnavailable(
                    f"schema registry at {self.settings.url} unavailable after "
                    f"{self.settings.retry_seconds:.0f}s of retries ({problem})"
                )
            log.warning("schema registry %s %s failed (%s); retrying in %.1fs", method, path, problem, delay)
            time.sleep(delay)
            delay = min(delay * 2, 2.0)

    @staticmethod
    def _error(response: httpx.Response) -> tuple[int, str]:
        try:
            body = response.json()
            return int(body.get("error_code", response.status_code)), str(body.get("message", response.text))
        except (ValueError, AttributeError):
            return response.status_code, response.text

    # --- API -----------------------------------------------------------------------------------

    def register(self, subject: str, schema: str) -> int:
        """Register ``schema`` under ``subject`` (idempotent) and return its id."""
        cached = self._ids.get((subject, schema))
        if cached is not None:
            return cached
        response = self._request("POST", f"/subjects/{subject}/versions", {"schema": schema, "schemaType": "AVRO"})
        if response.status_code == 409:
            _, message = self._error(response)
            raise IncompatibleSchema(f"schema for subject {subject!r} is incompatible with its history: {message}")
        if response.status_code >= 400:
            code, message = self._error(response)
            raise RegistryError(f"registering subject {subject!r} failed (error {code}): {message}")
        schema_id = int(response.json()["id"])
        self._ids[(subject, schema)] = schema_id
        self._by_id.setdefault(schema_id, schema)
        return schema_id

    def schema(self, schema_id: int) -> str:
        """The schema text with this id (cached: ids are immutable)."""
        cached = self._by_id.get(schema_id)
        if cached is not None:
            return cached
        response = self._request("GET", f"/schemas/ids/{schema_id}")
        if response.status_code == 404:
            raise UnknownSchemaId(f"schema id {schema_id} is not known to the registry at {self.settings.url}")
        if response.status_code >= 400:
            code, message = self._error(response)
            raise RegistryError(f"looking up schema id {schema_id} failed (error {code}): {message}")
        text = str(response.json()["schema"])
        self._by_id[schema_id] = text
        return text

    def subjects(self) -> list[str]:
        response = self._request("GET", "/subjects")
        if response.status_code >= 400:
            code, message = self._error(response)
            raise RegistryError(f"listing subjects failed (error {code}): {message}")
        return list(response.json())

    def versions(self, subject: str) -> list[int]:
        response = self._request("GET", f"/subjects/{subject}/versions")
        if response.status_code == 404:
            return []
        if response.status_code >= 400:
            code, message = self._error(response)
            raise RegistryError(f"listing versions of {subject!r} failed (error {code}): {message}")
        return list(response.json())

    def set_compatibility(self, level: Compatibility, subject: str | None = None) -> None:
        """Set the compatibility rule of ``subject``, or the global default when ``None``."""
        path = f"/config/{subject}" if subject else "/config"
        response = self._request("PUT", path, {"compatibility": level})
        if response.status_code >= 400:
            code, message = self._error(response)
            raise RegistryError(f"setting compatibility of {subject or 'the registry'} failed ({code}): {message}")

    def compatibility(self, subject: str | None = None) -> str | None:
        path = f"/config/{subject}" if subject else "/config"
        response = self._request("GET", path)
        if response.status_code == 404:
            return None
        if response.status_code >= 400:
            code, message = self._error(response)
            raise RegistryError(f"reading compatibility of {subject or 'the registry'} failed ({code}): {message}")
        return response.json().get("compatibilityLevel")

    def is_reachable(self) -> bool:
        """One quick probe, no retries."""
        try:
            return self._http.get("/subjects", timeout=2.0).status_code == 200
        except httpx.TransportError:
            return False
