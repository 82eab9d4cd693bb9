"""How long to wait before trying again: exponential backoff with full jitter, unless the provider said."""

from __future__ import annotations

import random
from collections.abc import Callable


def full_jitter(attempt: int, base_s: float, cap_s: float, rand: Callable[[], float] = random.random) -> float:
    """A random wait in [0, min(cap, base * 2**attempt)]: spreads a fleet's retries instead of syncing them."""
    return rand() * min(cap_s, base_s * 2.0 ** min(attempt, 64))  # 2**1024 overflows a float


def wait_before_retry(
    attempt: int, retry_after_s: float | None, base_s: float, cap_s: float, rand: Callable[[], float] = random.random
) -> float:
    """The provider's Retry-After when it gave one (never less), otherwise the jittered backoff."""
    if retry_after_s is not None:
        return max(0.0, retry_after_s)
    return full_jitter(attempt, base_s, cap_s, rand)
