"""Coinbase Advanced Trade's request authentication: a short-lived ES256 JWT per request.

As the CDP docs describe it (and their SDK builds it): header ``{"alg": "ES256", "kid": <key
name>, "nonce": <random hex>, "typ": "JWT"}``; claims ``{"sub": <key name>, "iss": "cdp",
"nbf": now, "exp": now + 120, "uri": "<METHOD> <host><path>"}``; signed with the key's EC P-256
private key (ECDSA over SHA-256; the JWS signature is ``r || s``, 32 bytes each, base64url). The
token goes in ``Authorization: Bearer``; the ``uri`` claim binds it to one method and path.
"""

from __future__ import annotations

import base64
import json
import secrets
import time

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from tickflow.errors import ConfigError

#: Seconds a token is valid: the docs' two minutes.
TOKEN_LIFETIME = 120


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class CoinbaseJwtSigner:
    def __init__(self, key_name: str, private_key_pem: bytes) -> None:
        # Keys copied from the CDP portal often carry literal "\n" sequences.
        pem = private_key_pem.replace(b"\\n", b"\n")
        try:
            key = load_pem_private_key(pem, None)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"the Coinbase private key is not a readable PEM key ({type(exc).__name__})") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
            raise ConfigError("the Coinbase private key must be an EC P-256 (ES256) key")
        self.key_name = key_name
        self._key = key

    def token(self, method: str, host: str, path: str, *, now: float | None = None) -> str:
        """A JWT for one request: ``host`` as the Host header carries it, ``path`` without query."""
        return self._token({"uri": f"{method} {host}{path}"}, now)

    def websocket_token(self, *, now: float | None = None) -> str:
        """A JWT for a WebSocket subscribe (the ``user`` channel): the same, without ``uri``."""
        return self._token({}, now)

    def _token(self, extra_claims: dict[str, str], now: float | None) -> str:
        issued = int(time.time() if now is None else now)
        header = {"alg": "ES256", "kid": self.key_name, "nonce": secrets.token_hex(16), "typ": "JWT"}
        claims = {"sub": self.key_name, "iss": "cdp", "nbf": issued, "exp": issued + TOKEN_LIFETIME, **extra_claims}
        signing_input = f"{b64url(_json(header))}.{b64url(_json(claims))}"
        r, s = decode_dss_signature(self._key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
        return f"{signing_input}.{b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"

    def __repr__(self) -> str:
        return f"CoinbaseJwtSigner({self.key_name!r}, ***)"


def _json(value: dict) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()
