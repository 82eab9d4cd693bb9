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
from typing import Any, NoReturn

from redis import Redis

from stepper.guards.admission import Admission, Limits, RedisGuardBackend
from stepper.infra.lua import ScriptCall

KEY_PREFIX = "stp_"
#: The identity of every caller of a gateway started with --unauthenticated.
ANONYMOUS = "anonymous"
#: The half-open probe lease of a key's buckets (admission.lua's reset timeout): no breaker ever opens for a key.
RESET_TIMEOUT_S = 1.0


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


class RateLimitExceeded(Exception):
    """The caller's key has no room left this minute; ``retry_after_s`` is whole seconds, at least one. (Not a
    frozen dataclass: it passes through context managers, which set its ``__traceback__``.)"""

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(retry_after_s)
        self.retry_after_s = retry_after_s


class KeyAdmission:
    """One request's admission against its key's buckets: one request and its estimated tokens, taken only if
    both have room. The publish of the request's task asks it in its own script where it can
    (:class:`stepper.infra.inflight.PublishAdmission`), else :meth:`ask` asks it alone; either raises
    :class:`RateLimitExceeded` when the key has no room, then and at every later :meth:`ask`."""

    def __init__(self, backend: RedisGuardBackend, bucket: str, limits: Limits, tokens: int) -> None:
        self._backend, self._bucket, self._limits, self._tokens = backend, bucket, limits, tokens
        self.client = backend.client
        self._refusal: RateLimitExceeded | None = None
        self._asked = False

    @property
    def asked(self) -> bool:
        return self._asked

    @property
    def call(self) -> ScriptCall:
        """admission.lua's ``admit`` for the key's buckets."""
        return self._backend.asked_along(
            self._bucket, self._limits, self._tokens, RESET_TIMEOUT_S, overspent=0, unused=0
        )

    def answered(self, reply: Any, pushed: bool) -> None:
        self._asked = True
        if not pushed:
            self._refuse(self._backend.answer(reply))

    def ask(self) -> None:
        if not self._asked:
            self._asked = True
            admission = self._backend.admit(self._bucket, self._limits, self._tokens, reset_timeout_s=RESET_TIMEOUT_S)
            if admission.verdict in {"reject", "cooldown"} or admission.wait_s > 0:
                self._refuse(admission)
        if self._refusal is not None:
            raise self._refusal

    def _refuse(self, admission: Admission) -> NoReturn:
        self._refusal = RateLimitExceeded(max(1, math.ceil(admission.wait_s)))
        raise self._refusal


class KeyLimiter:
    """Requests and estimated tokens per minute for each key, in Redis so that every replica shares them."""

    def __init__(self, client: Redis, rpm: int, tpm: int) -> None:
        self._backend = RedisGuardBackend(client)
        self._limits = Limits(rpm=rpm, tpm=tpm)

    def admission(self, caller: Caller, tokens: int = 0) -> KeyAdmission | None:
        """The caller's admission of one request and ``tokens``, not asked yet; None when keys have no limits."""
        if not (self._limits.rpm or self._limits.tpm):
            return None
        # A bucket name of its own: stepper status lists it beside the providers' as "gateway-<identity>".
        return KeyAdmission(self._backend, f"gateway-{caller.identity}", self._limits, tokens)

    def admit(self, caller: Caller, tokens: int = 0) -> None:
        """Take one request and ``tokens`` from the caller's buckets now, or raise RateLimitExceeded."""
        if (admission := self.admission(caller, tokens)) is not None:
            admission.ask()
