"""Binance's request signatures, exactly as its docs describe SIGNED endpoints.

REST: the signature payload is the percent-encoded query string concatenated, without a
separator, with the form body. HMAC keys sign it with HMAC-SHA-256 (hex); Ed25519 keys sign it
with Ed25519 (base64, then percent-encoded as a parameter value). The ``signature`` parameter
goes last, after ``timestamp`` and ``recvWindow``.

WebSocket API: the payload is every parameter but ``signature``, sorted by name, as
``name=value`` joined by ``&`` with no percent-encoding (``ws_api_payload``); the signature goes
into the JSON ``params`` as it is (hex, or plain base64).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Mapping
from typing import Protocol
from urllib.parse import quote, urlencode

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from tickflow.errors import ConfigError


class BinanceSigner(Protocol):
    def sign(self, payload: str) -> str:
        """The ``signature`` parameter's value for ``payload``, ready to append (percent-encoded)."""
        ...

    def signature(self, payload: str) -> str:
        """The signature of ``payload`` as it is (a WebSocket API request's ``signature``)."""
        ...


class HmacSigner:
    """HMAC-SHA-256 over the payload, hex: the docs' ``openssl dgst -sha256 -hmac``."""

    def __init__(self, secret: str) -> None:
        self._key = secret.encode()

    def sign(self, payload: str) -> str:
        return hmac.new(self._key, payload.encode(), hashlib.sha256).hexdigest()

    signature = sign  # hex needs no encoding

    def __repr__(self) -> str:  # never the secret
        return "HmacSigner(***)"


class Ed25519Signer:
    """Ed25519 over the payload, base64, percent-encoded (``+``, ``/`` and ``=`` are not safe)."""

    def __init__(self, private_key_pem: bytes, password: bytes | None = None) -> None:
        try:
            key = load_pem_private_key(private_key_pem, password)
        except (ValueError, TypeError) as exc:
            problem = type(exc).__name__
            raise ConfigError(f"the Binance Ed25519 private key is not a readable PEM key ({problem})") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise ConfigError("the Binance private key is not an Ed25519 key")
        self._key = key

    def sign(self, payload: str) -> str:
        return quote(self.signature(payload), safe="")

    def signature(self, payload: str) -> str:
        return base64.b64encode(self._key.sign(payload.encode())).decode()

    def __repr__(self) -> str:
        return "Ed25519Signer(***)"


def signer_for(key_type: str, secret: str) -> BinanceSigner:
    """The signer of an API key: ``hmac`` (the secret key) or ``ed25519`` (the private key, PEM)."""
    return HmacSigner(secret) if key_type == "hmac" else Ed25519Signer(secret.encode())


def ws_api_payload(params: Mapping[str, object]) -> str:
    """The WebSocket API's signature payload: the parameters but ``signature``, sorted by name,
    ``name=value`` joined by ``&``, values as their JSON text would read unquoted (no
    percent-encoding: non-ASCII values are signed as their UTF-8)."""
    return "&".join(f"{name}={_text(params[name])}" for name in sorted(params) if name != "signature")


def _text(value: object) -> str:
    if isinstance(value, bool):  # before int: bool is one
        return "true" if value else "false"
    return str(value)


#: What percent-encoding leaves as it is: almost every parameter of an order (symbols, numbers,
#: client order ids) is made of these; a query made only of them (and ``=``/``&`` between) is
#: already encoded, checked with one match instead of a ``quote`` call per value.
_ENCODED = re.compile(r"[A-Za-z0-9_.~=&-]*")


def encode_params(params: dict[str, str]) -> str:
    """``parameter=value`` pairs joined by ``&``, percent-encoded as the docs' payloads are."""
    joined = "&".join([f"{key}={value}" for key, value in params.items()])
    if _ENCODED.fullmatch(joined) and joined.count("=") == len(params):  # nothing to encode
        return joined
    return urlencode(params, quote_via=quote, safe="")


def signed_params(params: dict[str, str], signer: BinanceSigner, timestamp_ms: int, recv_window_ms: int) -> str:
    """The whole parameter string of a SIGNED request: the parameters, ``recvWindow``,
    ``timestamp``, then ``signature`` over everything before it (the docs' order)."""
    payload = encode_params({**params, "recvWindow": str(recv_window_ms), "timestamp": str(timestamp_ms)})
    return f"{payload}&signature={signer.sign(payload)}"
