"""Simulated trading accounts: balances, and the API keys each venue authenticates them by.

A test builds accounts in Python (``Account(...)``, ``Accounts([...])``); the CLI loads them from
YAML (``load_accounts``)::

    accounts:
      - name: alice
        balances: {USDT: "1000000", USD: "1000000", BTC: "100"}   # unspecified assets: 0
        binance:
          api_key: "abc..."                # the X-MBX-APIKEY header
          hmac_secret: "..."               # HMAC-SHA256 key, or
          ed25519_public_key: "-----BEGIN PUBLIC KEY-----\\n..."  # then signatures are Ed25519
        coinbase:
          key_name: "organizations/{org_id}/apiKeys/{key_id}"
          public_key: "-----BEGIN PUBLIC KEY-----\\n..."           # EC P-256 (ES256) or Ed25519

The simulator holds only what a venue holds: the HMAC secret (HMAC is symmetric) or a *public*
key, so it verifies signatures exactly as the venue does and never needs a private key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path

import yaml
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature


@dataclass(frozen=True)
class BinanceKey:
    """One Binance API key: HMAC (``hmac_secret``) or Ed25519 (``ed25519_public_key``, PEM)."""

    api_key: str
    hmac_secret: str | None = None
    ed25519_public_key: str | None = None

    def __post_init__(self) -> None:
        if (self.hmac_secret is None) == (self.ed25519_public_key is None):
            raise ValueError(f"Binance key {self.api_key[:8]}...: give exactly one of hmac_secret, ed25519_public_key")
        if self.ed25519_public_key is not None:
            key = serialization.load_pem_public_key(self.ed25519_public_key.encode())
            if not isinstance(key, ed25519.Ed25519PublicKey):
                raise ValueError("ed25519_public_key is not an Ed25519 public key")

    def verify(self, payload: bytes, signature: str) -> bool:
        """Binance's rule: HMAC-SHA256 as hex (case-insensitive), Ed25519 as base64 (case-sensitive)."""
        if self.hmac_secret is not None:
            expected = hmac.new(self.hmac_secret.encode(), payload, hashlib.sha256).hexdigest()
            return hmac.compare_digest(expected, signature.lower())
        assert self.ed25519_public_key is not None
        key = serialization.load_pem_public_key(self.ed25519_public_key.encode())
        assert isinstance(key, ed25519.Ed25519PublicKey)
        try:
            key.verify(base64.b64decode(signature, validate=True), payload)
        except (InvalidSignature, binascii.Error, ValueError):
            return False
        return True


@dataclass(frozen=True)
class CoinbaseKey:
    """One CDP API key: its name (the JWT's ``kid`` and ``sub``) and its public key (PEM)."""

    key_name: str
    public_key: str

    def __post_init__(self) -> None:
        key = serialization.load_pem_public_key(self.public_key.encode())
        if isinstance(key, ec.EllipticCurvePublicKey):
            if not isinstance(key.curve, ec.SECP256R1):
                raise ValueError("Coinbase EC keys are P-256")
        elif not isinstance(key, ed25519.Ed25519PublicKey):
            raise ValueError("Coinbase keys are EC P-256 (ES256) or Ed25519 (EdDSA)")

    @property
    def algorithm(self) -> str:
        key = serialization.load_pem_public_key(self.public_key.encode())
        return "EdDSA" if isinstance(key, ed25519.Ed25519PublicKey) else "ES256"

    def verify(self, signing_input: bytes, signature: bytes) -> bool:
        """A JWS signature: ES256 is raw ``r || s`` (32 bytes each), not DER; EdDSA is raw."""
        key = serialization.load_pem_public_key(self.public_key.encode())
        try:
            if isinstance(key, ed25519.Ed25519PublicKey):
                key.verify(signature, signing_input)
                return True
            assert isinstance(key, ec.EllipticCurvePublicKey)
            if len(signature) != 64:
                return False
            r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
            key.verify(encode_dss_signature(r, s), signing_input, ec.ECDSA(hashes.SHA256()))
            return True
        except InvalidSignature:
            return False


@dataclass(eq=False)
class Account:
    """A trading account; ``balances`` are the starting balances (the engine keeps the live ones)."""

    name: str
    balances: dict[str, Decimal] = field(default_factory=dict)
    binance: BinanceKey | None = None
    coinbase: CoinbaseKey | None = None

    def __post_init__(self) -> None:
        self.balances = {asset: Decimal(str(amount)) for asset, amount in self.balances.items()}


class Accounts:
    """Every account, and the lookups the venues authenticate by."""

    def __init__(self, accounts: list[Account] | None = None) -> None:
        self.all: list[Account] = []
        self.by_binance_key: dict[str, Account] = {}
        self.by_coinbase_key: dict[str, Account] = {}
        for account in accounts or []:
            self.add(account)

    def add(self, account: Account) -> Account:
        if any(a.name == account.name for a in self.all):
            raise ValueError(f"duplicate account name {account.name!r}")
        if account.binance is not None:
            if account.binance.api_key in self.by_binance_key:
                raise ValueError(f"Binance API key of {account.name!r} is already used")
            self.by_binance_key[account.binance.api_key] = account
        if account.coinbase is not None:
            if account.coinbase.key_name in self.by_coinbase_key:
                raise ValueError(f"Coinbase key name of {account.name!r} is already used")
            self.by_coinbase_key[account.coinbase.key_name] = account
        self.all.append(account)
        return account

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.all)

    def __len__(self) -> int:
        return len(self.all)


def accounts_from_dict(document: dict) -> Accounts:
    """Accounts from the YAML document's structure (see the module docstring)."""
    entries = document.get("accounts") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise ValueError("an accounts file is a mapping with a list under 'accounts'")
    accounts = Accounts()
    for entry in entries:
        if not isinstance(entry, dict) or not entry.get("name"):
            raise ValueError(f"every account needs a name: {entry!r}")
        try:
            balances = {str(k): Decimal(str(v)) for k, v in (entry.get("balances") or {}).items()}
        except InvalidOperation as exc:
            raise ValueError(f"account {entry['name']!r}: a balance is not a decimal number") from exc
        binance = entry.get("binance")
        coinbase = entry.get("coinbase")
        accounts.add(
            Account(
                name=str(entry["name"]),
                balances=balances,
                binance=BinanceKey(**binance) if binance else None,
                coinbase=CoinbaseKey(**coinbase) if coinbase else None,
            )
        )
    return accounts


def load_accounts(path: Path | str) -> Accounts:
    return accounts_from_dict(yaml.safe_load(Path(path).read_text()))
