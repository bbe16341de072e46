"""App JWTs, installation tokens and rate-limit buckets, checked the way GitHub checks them."""

from __future__ import annotations

import secrets
import string
import time
from dataclasses import dataclass, field
from functools import lru_cache

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes

# GitHub allows at most ten minutes between iat and exp; a minute of clock skew is tolerated.
MAX_JWT_LIFETIME = 600
CLOCK_SKEW = 60
TOKEN_ALPHABET = string.ascii_letters + string.digits


def generate_private_key_pem() -> str:
    """A fresh RSA 2048 key in PKCS#1 PEM, the format GitHub hands out for Apps."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    return pem.decode()


@lru_cache(maxsize=32)
def load_private_key(pem: str) -> PrivateKeyTypes:
    """Parse a PEM private key once; parsing an RSA key costs tens of milliseconds."""
    return serialization.load_pem_private_key(pem.encode(), password=None)


@lru_cache(maxsize=32)
def load_public_key(pem: str) -> PublicKeyTypes:
    """Parse a PEM public key once."""
    return serialization.load_pem_public_key(pem.encode())


def public_key_pem(private_key_pem: str) -> str:
    """The public half of a PEM private key."""
    pub = load_private_key(private_key_pem).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return pub.decode()


def make_jwt(private_key_pem: str, app_id: int | str, *, lifetime: int = 540,
             now: float | None = None) -> str:
    """An App JWT signed like a GitHub App signs it (iat backdated 60 s for clock drift)."""
    issued = int(now if now is not None else time.time()) - 60
    claims = {"iat": issued, "exp": issued + 60 + lifetime, "iss": str(app_id)}
    key = load_private_key(private_key_pem)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("a GitHub App key is an RSA key")
    return jwt.encode(claims, key, algorithm="RS256")


def verify_jwt(token: str, public_pem: str, app_id: int, client_id: str) -> str | None:
    """None when the JWT is valid for this App, else why not."""
    try:
        key = load_public_key(public_pem)
        if not isinstance(key, rsa.RSAPublicKey):
            return "the App key is not an RSA key"
        claims = jwt.decode(
            token,
            key,
            algorithms=["RS256"],
            options={"require": ["iat", "exp", "iss"], "verify_iat": False},
            leeway=0,
        )
    except jwt.PyJWTError as exc:
        return str(exc)
    now = time.time()
    iat, exp = claims["iat"], claims["exp"]
    if not isinstance(iat, int | float) or not isinstance(exp, int | float):
        return "iat and exp must be numbers"
    if iat > now + CLOCK_SKEW:
        return "iat is in the future"
    if exp - iat > MAX_JWT_LIFETIME + CLOCK_SKEW:
        return "exp is too far in the future"
    if str(claims["iss"]) not in (str(app_id), client_id):
        return "iss is not this App"
    return None


@dataclass
class TokenInfo:
    """An installation access token and what it may reach."""

    token: str
    installation_id: int
    expires: float
    repositories: set[str] | None = None
    permissions: dict[str, str] = field(default_factory=dict)

    def covers(self, full_name: str) -> bool:
        """Whether the token reaches this repository (names compare case-insensitively)."""
        if self.repositories is None:
            return True
        return full_name.lower() in {r.lower() for r in self.repositories}


class TokenStore:
    """Issued installation tokens."""

    def __init__(self) -> None:
        self.tokens: dict[str, TokenInfo] = {}

    def issue(self, installation_id: int, ttl: float, repositories: set[str] | None,
              permissions: dict[str, str]) -> TokenInfo:
        """Mint a ``ghs_`` token valid for ``ttl`` seconds."""
        value = "ghs_" + "".join(secrets.choice(TOKEN_ALPHABET) for _ in range(36))
        info = TokenInfo(value, installation_id, time.time() + ttl, repositories, permissions)
        self.tokens[value] = info
        return info

    def check(self, value: str) -> TokenInfo | None:
        """The token's record when it is known and unexpired."""
        info = self.tokens.get(value)
        if info is None or info.expires <= time.time():
            return None
        return info

    def revoke_all(self) -> None:
        """Forget every issued token."""
        self.tokens.clear()


@dataclass
class Bucket:
    """A primary rate-limit window (one hour)."""

    limit: int
    reset: int
    used: int = 0

    @property
    def remaining(self) -> int:
        """Requests left in this window."""
        return max(self.limit - self.used, 0)


class RateLimits:
    """Buckets per installation, for the App JWT, and per address for anonymous calls."""

    def __init__(self, limit: int = 5000) -> None:
        self.limit = limit
        self.buckets: dict[str, Bucket] = {}

    def bucket(self, key: str) -> Bucket:
        """The current bucket for ``key``, opening a new window when the old one ended."""
        now = int(time.time())
        bucket = self.buckets.get(key)
        if bucket is None or bucket.reset <= now:
            limit = 60 if key.startswith("ip:") else self.limit
            bucket = Bucket(limit=limit, reset=now + 3600)
            self.buckets[key] = bucket
        return bucket
