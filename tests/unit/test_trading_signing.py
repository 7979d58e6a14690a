"""Request signing, checked against the venues' own documented examples where they publish them."""

from __future__ import annotations

import base64
import json
from urllib.parse import quote, unquote

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from producers.venues.binance.signing import Ed25519Signer, HmacSigner, encode_params, signed_params, ws_api_payload
from producers.venues.coinbase.signing import CoinbaseJwtSigner
from producers.venues.trading import client_order_id
from tickflow.errors import ConfigError

# Binance's documented HMAC example (rest-api.md, "SIGNED request example (HMAC)").
DOC_SECRET = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"
DOC_PARAMS = {"symbol": "LTCBTC", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "quantity": "1",
              "price": "0.1"}  # fmt: skip


def test_binance_hmac_reproduces_the_documented_request() -> None:
    query = signed_params(DOC_PARAMS, HmacSigner(DOC_SECRET), 1499827319559, 5000)
    assert query == (
        "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1&recvWindow=5000"
        "&timestamp=1499827319559&signature=c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71"
    )


def test_binance_hmac_percent_encodes_before_signing_as_documented() -> None:
    params = {**DOC_PARAMS, "symbol": "\uff11\uff12\uff13\uff14\uff15\uff16"}
    query = signed_params(params, HmacSigner(DOC_SECRET), 1499827319559, 5000)
    assert query.startswith("symbol=%EF%BC%91%EF%BC%92%EF%BC%93%EF%BC%94%EF%BC%95%EF%BC%96&side=BUY")
    assert query.endswith("&signature=e1353ec6b14d888f1164ae9af8228a3dbd508bc82eb867db8ab6046442f33ef3")


# RFC 8032, section 7.1, TEST 1 and TEST 2: Ed25519's own documented vectors.
RFC8032 = [
    ("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60", b"",
     "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24"
     "655141438e7a100b"),
    ("4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb", b"\x72",
     "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb0"
     "0d291612bb0c00"),
]  # fmt: skip


def _ed25519_pem(seed_hex: str) -> bytes:
    key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(seed_hex))
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())  # fmt: skip


@pytest.mark.parametrize(("seed", "message", "signature"), RFC8032)
def test_binance_ed25519_signs_like_rfc8032(seed: str, message: bytes, signature: str) -> None:
    signed = Ed25519Signer(_ed25519_pem(seed)).sign(message.decode("latin-1"))
    assert base64.b64decode(unquote(signed)).hex() == signature


def test_binance_ed25519_signature_is_base64_percent_encoded_and_verifies() -> None:
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    payload = "symbol=BTCUSDT&side=SELL&type=LIMIT&timeInForce=GTC&quantity=1&price=0.2&timestamp=1668481559918"
    signature = Ed25519Signer(pem).sign(payload)
    assert not set(signature) & set("+/=")  # percent-encoded, as the docs' step 3 asks
    key.public_key().verify(base64.b64decode(unquote(signature)), payload.encode())  # raises if wrong


#: The WebSocket API's documented HMAC examples ("SIGNED request security"): the same secret over
#: the request's parameters, ASCII only and with a full-width symbol, as JSON gives them.
WS_API_KEY = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A"
WS_API_SECRET = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"
WS_API_EXAMPLES = [
    ({"symbol": "BTCUSDT", "side": "SELL", "type": "LIMIT", "timeInForce": "GTC", "quantity": "0.01000000",
      "price": "52000.00", "recvWindow": 100, "timestamp": 1645423376532, "apiKey": WS_API_KEY},
     "aa1b5712c094bc4e57c05a1a5c1fd8d88dcd628338ea863fec7b88e59fe2db24"),
    ({"symbol": "\uff11\uff12\uff13\uff14\uff15\uff16", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC",
      "quantity": "1.00000000", "price": "0.10000000", "recvWindow": 5000, "timestamp": 1645423376532,
      "apiKey": WS_API_KEY},
     "b33892ae8e687c939f4468c6268ddd4c40ac1af18ad19a064864c47bae0752cd"),
]  # fmt: skip


@pytest.mark.parametrize(("params", "signature"), WS_API_EXAMPLES)
def test_binance_websocket_api_payload_and_hmac_reproduce_the_documented_examples(params: dict,
                                                                                   signature: str) -> None:  # fmt: skip
    payload = ws_api_payload({**params, "signature": "not signed"})  # sorted by name, the signature left out
    assert payload.startswith(f"apiKey={WS_API_KEY}&price=") and payload.endswith("&type=LIMIT")
    assert HmacSigner(WS_API_SECRET).signature(payload) == signature


def test_binance_ed25519_websocket_api_signature_is_plain_base64() -> None:
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    payload = ws_api_payload({"apiKey": "k", "timestamp": 1645423376532, "flag": True})
    assert payload == "apiKey=k&flag=true&timestamp=1645423376532"
    signature = Ed25519Signer(pem).signature(payload)
    key.public_key().verify(base64.b64decode(signature, validate=True), payload.encode())  # raises if wrong
    assert Ed25519Signer(pem).sign(payload) == quote(signature, safe="")  # REST's: the same, percent-encoded


def test_a_key_that_is_not_ed25519_is_a_config_error_without_the_key() -> None:
    ec_pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(ConfigError, match="not an Ed25519 key") as info:
        Ed25519Signer(ec_pem)
    assert "PRIVATE KEY" not in str(info.value)
    with pytest.raises(ConfigError, match="not a readable PEM"):
        Ed25519Signer(b"-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")


def _b64url_decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def test_coinbase_jwt_has_the_documented_shape_and_verifies() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                            serialization.NoEncryption())  # fmt: skip
    name = "organizations/org-1/apiKeys/key-1"
    token = CoinbaseJwtSigner(name, pem).token(
        "POST", "api.coinbase.com", "/api/v3/brokerage/orders", now=1_700_000_000
    )
    header_b64, claims_b64, signature_b64 = token.split(".")
    header, claims = json.loads(_b64url_decode(header_b64)), json.loads(_b64url_decode(claims_b64))
    assert header["alg"] == "ES256" and header["kid"] == name and header["typ"] == "JWT"
    assert len(header["nonce"]) == 32
    assert claims == {"sub": name, "iss": "cdp", "nbf": 1_700_000_000, "exp": 1_700_000_120,
                      "uri": "POST api.coinbase.com/api/v3/brokerage/orders"}  # fmt: skip
    raw = _b64url_decode(signature_b64)
    assert len(raw) == 64  # JWS ES256: r || s, not DER
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    key.public_key().verify(der, f"{header_b64}.{claims_b64}".encode(), ec.ECDSA(hashes.SHA256()))


def test_coinbase_accepts_keys_with_escaped_newlines_and_refuses_other_curves() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                            serialization.NoEncryption())  # fmt: skip
    escaped = pem.replace(b"\n", b"\\n")  # as pasted from the CDP portal's JSON
    assert CoinbaseJwtSigner("k", escaped).token("GET", "h", "/p").count(".") == 2
    other = ec.generate_private_key(ec.SECP384R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(ConfigError, match="P-256"):
        CoinbaseJwtSigner("k", other)


def test_signers_never_show_their_secret() -> None:
    assert DOC_SECRET not in repr(HmacSigner(DOC_SECRET))


def test_client_order_ids_are_derived_stable_and_venue_safe() -> None:
    first = client_order_id("cmd-1")
    assert first == client_order_id("cmd-1")  # a repeated command maps to the same venue order
    assert first != client_order_id("cmd-2") and first != client_order_id("cmd-1", salt="amend")
    assert len(first) <= 36 and first.isalnum() and first.startswith("tf")


def test_encode_params_keeps_order_and_encodes_reserved_characters() -> None:
    assert encode_params({"b": "1", "a": "x y&z"}) == "b=1&a=x%20y%26z"
