"""Binance's request signatures, exactly as its docs describe SIGNED endpoints.

The signature payload is the percent-encoded query string concatenated, without a separator,
with the form body. HMAC keys sign it with HMAC-SHA-256 (hex); Ed25519 keys sign it with
Ed25519 (base64, then percent-encoded as a parameter value). The ``signature`` parameter goes
last, after ``timestamp`` and ``recvWindow``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from typing import Protocol
from urllib.parse import quote, urlencode

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from tickflow.errors import ConfigError


class BinanceSigner(Protocol):
    def sign(self, payload: str) -> str:
        """The ``signature`` parameter's value for ``payload``, ready to append (percent-encoded)."""
        ...


class HmacSigner:
    """HMAC-SHA-256 over the payload, hex: the docs' ``openssl dgst -sha256 -hmac``."""

    def __init__(self, secret: str) -> None:
        self._key = secret.encode()

    def sign(self, payload: str) -> str:
        return hmac.new(self._key, payload.encode(), hashlib.sha256).hexdigest()

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
        return quote(base64.b64encode(self._key.sign(payload.encode())).decode(), safe="")

    def __repr__(self) -> str:
        return "Ed25519Signer(***)"


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
