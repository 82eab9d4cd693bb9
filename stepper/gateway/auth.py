"""API keys and per-key limits.

Keys are never stored: the configuration holds their SHA-256 hex digests, and a request's bearer key is hashed
and compared with each digest in constant time. A caller is known by the first 8 hex characters of its key's
digest (logs, metrics, rate-limit buckets), which says nothing about the key. Limits per key reuse the workers'
admission script (stepper.guards.admission): one Redis round trip checks the requests- and tokens-per-minute
buckets together, fleet-wide across gateway replicas, and takes nothing when either has no room.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
from dataclasses import dataclass

from redis import Redis

from stepper.guards.admission import Limits, RedisGuardBackend

KEY_PREFIX = "stp_"
#: The identity of every caller of a gateway started with --unauthenticated.
ANONYMOUS = "anonymous"


@dataclass(frozen=True)
class Caller:
    """Who is calling: the short identity of their key (never the key, never the whole digest)."""

    identity: str


def key_digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> tuple[str, str]:
    """A fresh random key and the digest to configure for it."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    return key, key_digest(key)


def match_key(key: str, digests: tuple[str, ...]) -> Caller | None:
    """The caller whose digest ``key`` hashes to; every digest is compared (in constant time) whatever matches."""
    offered = key_digest(key).encode()
    found: str | None = None
    for digest in digests:
        if hmac.compare_digest(offered, digest.encode()):
            found = digest
    return Caller(found[:8]) if found is not None else None


@dataclass(frozen=True)
class RateLimitExceeded(Exception):
    """The caller's key has no room left this minute; ``retry_after_s`` is whole seconds, at least one."""

    retry_after_s: int


class KeyLimiter:
    """Requests and estimated tokens per minute for each key, in Redis so that every replica shares them."""

    def __init__(self, client: Redis, rpm: int, tpm: int) -> None:
        self._backend = RedisGuardBackend(client)
        self._limits = Limits(rpm=rpm, tpm=tpm)

    def admit(self, caller: Caller, tokens: int = 0) -> None:
        """Take one request and ``tokens`` from the caller's buckets, or raise RateLimitExceeded."""
        if not (self._limits.rpm or self._limits.tpm):
            return
        # A bucket name of its own: stepper status lists it beside the providers' as "gateway-<identity>".
        admission = self._backend.admit(f"gateway-{caller.identity}", self._limits, tokens, reset_timeout_s=1.0)
        if admission.wait_s > 0:
            raise RateLimitExceeded(max(1, math.ceil(admission.wait_s)))
