"""Shapes shared by every family: the image input, attempts and the task result envelope."""

from __future__ import annotations

import base64
import binascii
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

Kind = Literal["report", "chat", "ocr", "steps", "vision", "speech"]
KINDS: tuple[Kind, ...] = get_args(Kind)

#: Bytes of base64 text accepted inline in one image; larger images belong behind a path or URL.
MAX_INLINE_IMAGE_B64 = 28 * 1024 * 1024


class Strict(BaseModel):
    """Unknown fields are an error: a typo in a producer must not be silently ignored."""

    model_config = ConfigDict(extra="forbid")


CacheMode = Literal["auto", "use", "bypass", "refresh"]

#: Fields that say how to run a request, not what it asks: excluded from cache keys and mock seeds.
OPTION_FIELDS = frozenset({"cache", "idempotency_key", "callback_url", "stream", "deadline_s"})


class TaskRequest(Strict):
    """What every family's request may carry besides its own fields."""

    #: auto: cache deterministic requests; use: cache this one even if it is not; bypass: neither read nor
    #: write the cache; refresh: compute again and overwrite.
    cache: CacheMode = "auto"
    #: A second submission with the same key within the window returns the first one's task and result.
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=200)
    #: Where the outcome (success or failure) is POSTed, signed; see stepper.outcomes.webhooks.
    callback_url: str | None = Field(default=None, max_length=2048, pattern=r"^https?://")
    #: The caller's budget in seconds, counted from submission: no attempt starts that cannot finish in time,
    #: and the task fails with DeadlineExceeded once it is spent (a message still queued then never runs).
    deadline_s: float | None = Field(default=None, gt=0, le=24 * 3600)

    def content(self) -> dict[str, Any]:
        """The request itself, as JSON, without the options that only say how to run it."""
        return self.model_dump(mode="json", exclude=set(OPTION_FIELDS))


class Image(Strict):
    """An image given inline (base64), by a path under the configured roots, or by an http(s) URL."""

    b64: str | None = Field(default=None, min_length=1, max_length=MAX_INLINE_IMAGE_B64)
    path: str | None = Field(default=None, min_length=1, max_length=4096)
    url: str | None = Field(default=None, min_length=1, max_length=8192, pattern=r"^https?://")

    @model_validator(mode="after")
    def _exactly_one_source(self) -> Image:
        given = [name for name in ("b64", "path", "url") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of b64, path or url (got {', '.join(given) or 'none'})")
        return self

    @field_validator("b64")
    @classmethod
    def _valid_base64(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                base64.b64decode(value, validate=True)
            except binascii.Error as exc:
                raise ValueError(f"b64 is not valid base64 ({exc})") from None
        return value


Box = tuple[int, int, int, int]
"""[x, y, width, height] in pixels."""

Outcome = Literal[
    "ok",  # the provider answered with a valid output
    "skipped",  # the provider is not configured here (missing key, binary or extra)
    "retryable_error",  # a transient failure: timeout, 5xx, reset, truncated output
    "rate_limited",  # the provider or our fleet-wide limit asked us to wait
    "circuit_open",  # the fleet-wide breaker rejected the call before it was made
    "permanent_error",  # auth or unsupported input: the next provider is tried
    "too_large",  # the request exceeds this model's context window: providers with larger ones are tried
    "unsupported_parameter",  # the server refused an optional parameter: the same provider is tried without it
    "rejected",  # the request itself was refused: the chain stops
    "cancelled",  # the task was cancelled during this attempt; its call was closed
    "deadline",  # the request's deadline_s passed during this attempt
    "budget_exhausted",  # the provider's or the model's spend budget is spent: the next provider is tried
]

#: What a result cost: the vendor's counters (``input_tokens``, ``cached_input_tokens``, ``output_tokens``...,
#: whole numbers) and, when the model has a price, ``cost`` (a float, in ``currency``, e.g. ``"USD"``).
Usage = dict[str, int | float | str]


class Attempt(Strict):
    """One try of one provider, successful or not; ``run`` is the task's broker run it belongs to (1, then
    one more for each retry through the broker)."""

    run: int = Field(default=1, ge=1)
    provider: str
    #: Which of the provider's ``deployments`` the attempt went to (its label, or its index when it has none);
    #: None for a provider without deployments. Never its key or URL.
    deployment: str | None = None
    model: str
    outcome: Outcome
    error: str | None = None
    ms: float


class TaskResult(Strict):
    """What every task returns, whatever its kind.

    The short fields come first: Flower's result column (and Celery's "succeeded" log line, at DEBUG) show a
    prefix of the result (``FamilyTask.resultrepr_maxsize``), which then names who answered before the answer.
    """

    kind: Kind
    provider: str
    model: str
    cached: bool = False
    output: dict[str, Any]
    attempts: list[Attempt]
    elapsed_ms: float
    usage: Usage = Field(default_factory=dict)


def describe_validation_error(exc: ValidationError) -> str:
    """One line per problem, each naming the field path: ``messages.0.role: Input should be ...``."""
    problems = []
    for error in exc.errors(include_url=False):
        location = ".".join(str(part) for part in error["loc"]) or "(request)"
        problems.append(f"{location}: {error['msg']}")
    return "; ".join(problems)
