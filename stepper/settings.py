"""stepper's settings as pydantic models: the single source of every ``stepper_*`` default.

The deployment's config module (``celeryconfig.py``) and the environment override these (see
:mod:`stepper.config`, which loads and validates them); a setting left out takes the default written here.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from stepper.schemas import KINDS, Kind

Mode = Literal["live", "mock", "hybrid"]

#: A gateway key is configured as the SHA-256 hex digest of the key, never the key itself.
KEY_DIGEST_PATTERN = r"^[0-9a-f]{64}$"

#: How long Redis waits for an unacknowledged message before handing it to another worker (Celery's
#: ``visibility_timeout`` transport option, written to both the broker's and the result backend's). It must
#: exceed the hard time limit and the longest retry countdown, or the same task runs twice.
DEFAULT_VISIBILITY_TIMEOUT_S = 3600

#: Providers by name. "class" is a dotted path ("package.module:Class"), imported when first used. A provider
#: whose key variable is unset (or whose binary is missing) is skipped and recorded. A deployment's
#: ``stepper_providers`` adds to these by name (a name it declares replaces that entry whole).
DEFAULT_PROVIDERS: dict[str, dict[str, Any]] = {
    "mock": {"class": "stepper.providers.mock:MockProvider"},
    "openai": {
        "class": "stepper.providers.openai:OpenAIProvider",
        "kinds": ["chat", "report"],
        "api_key_env": "OPENAI_API_KEY",
        "models": ["gpt-4o-mini", "gpt-4o"],
        "budget": {"input_tokens": 16000, "output_tokens": 4096},
    },
    # The self-hosted Mistral 7B service: any OpenAI-compatible server (vLLM, Ollama, TGI). It is used once
    # STEPPER_MISTRAL_BASE_URL (or base_url) points at its /v1.
    "mistral": {
        "class": "stepper.providers.openai:OpenAIProvider",
        "kinds": ["chat", "report"],
        "api_key_env": None,
        "models": ["mistral-7b-instruct"],
        "options": {"requires_base_url": True, "response_format": "json_object"},
        "budget": {"input_tokens": 6000, "output_tokens": 2048},
    },
    "gemini": {
        "class": "stepper.providers.gemini:GeminiProvider",
        "kinds": ["chat", "report"],
        "api_key_env": "GEMINI_API_KEY",
        "models": ["gemini-2.0-flash"],
        "budget": {"input_tokens": 32000, "output_tokens": 4096},
    },
    "cohere": {
        "class": "stepper.providers.cohere:CohereProvider",
        "kinds": ["chat", "report"],
        "api_key_env": "COHERE_API_KEY",
        "models": ["command-r-plus-08-2024"],
    },
    # A Hugging Face Space through Gradio's HTTP API: a free last resort, once base_url names the Space
    # (https://<owner>-<space>.hf.space). HF_TOKEN is sent when set; public Spaces need none.
    "hf_space": {
        "class": "stepper.providers.hf_space:HfSpaceProvider",
        "kinds": ["chat", "report"],
        "api_key_env": "HF_TOKEN",
        "models": ["space"],
        "first_token_timeout_s": 120,  # a sleeping Space takes a while to wake
    },
    "tesseract": {"class": "stepper.providers.tesseract:TesseractProvider", "kinds": ["ocr"]},
    "opencv": {"class": "stepper.providers.opencv:OpenCvProvider", "kinds": ["steps", "vision"]},
    "elevenlabs": {
        "class": "stepper.providers.elevenlabs:ElevenLabsProvider",
        "kinds": ["speech"],
        "api_key_env": "ELEVENLABS_API_KEY",
        "models": ["eleven_multilingual_v2"],
    },
    "espeak": {"class": "stepper.providers.espeak:EspeakProvider", "kinds": ["speech"]},
}

#: The chain of each kind: "provider:model" entries, tried in order. A deployment's ``stepper_chains``
#: replaces the chains of the kinds it names.
DEFAULT_CHAINS: dict[Kind, list[str]] = {
    "report": [
        "openai:gpt-4o-mini",
        "mistral:mistral-7b-instruct",
        "gemini:gemini-2.0-flash",
        "cohere:command-r-plus-08-2024",
    ],
    "chat": [
        "openai:gpt-4o-mini",
        "mistral:mistral-7b-instruct",
        "gemini:gemini-2.0-flash",
        "cohere:command-r-plus-08-2024",
        "hf_space:space",
    ],
    "ocr": ["tesseract:tesseract"],
    "steps": ["opencv:opencv"],
    "vision": ["opencv:opencv"],
    "speech": ["elevenlabs:eleven_multilingual_v2", "espeak:espeak-ng"],
}


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TokenBudget(_Settings):
    input_tokens: int = Field(default=4096, ge=1)
    output_tokens: int = Field(default=2048, ge=1)


class ProviderSettings(_Settings):
    """One provider as the deployment declared it."""

    name: str
    target: str = Field(alias="class", pattern=r"^[\w.]+:\w+$")
    kinds: tuple[Kind, ...] | None = None
    base_url: str | None = None
    api_key_env: str | None = None
    models: tuple[str, ...] = ()
    #: Deadlines of one call, in seconds: to connect; to the first byte of the answer (the headers of a plain
    #: answer, the first text of a stream), which also bounds any silence after it; and for the whole call.
    #: Missing the first-token deadline moves the chain on to the next provider at once.
    connect_timeout_s: float = Field(default=5.0, gt=0)
    first_token_timeout_s: float = Field(default=30.0, gt=0)
    total_timeout_s: float = Field(default=120.0, gt=0)
    rpm: int = Field(default=0, ge=0, description="requests per minute, fleet-wide; 0 = unlimited")
    tpm: int = Field(default=0, ge=0, description="tokens per minute, fleet-wide; 0 = unlimited")
    #: LLMs: the token budget of a model not listed in ``budgets``, and per-model budgets.
    budget: TokenBudget = TokenBudget()
    budgets: dict[str, TokenBudget] = Field(default_factory=dict)
    options: dict[str, Any] = Field(default_factory=dict)

    def budget_for(self, model: str) -> TokenBudget:
        return self.budgets.get(model, self.budget)

    @model_validator(mode="before")
    @classmethod
    def _timeout_s_was_split(cls, data: Any) -> Any:
        if isinstance(data, dict) and "timeout_s" in data:
            raise ValueError(
                "timeout_s was split in two: first_token_timeout_s (the wait for the first byte of the answer, "
                "and the longest silence after it) and total_timeout_s (the whole call); rename it"
            )
        return data


class ChainEntry(_Settings):
    provider: str
    model: str

    @classmethod
    def parse(cls, text: str) -> ChainEntry:
        provider, _, model = text.strip().partition(":")
        return cls(provider=provider, model=model or provider)

    def __str__(self) -> str:
        return f"{self.provider}:{self.model}"


class ImageSettings(_Settings):
    """Limits on image input; see stepper.providers.media.images."""

    max_bytes: int = Field(default=20 * 1024 * 1024, ge=1)
    max_pixels: int = Field(default=40_000_000, ge=1)
    #: Directories under which ``{"path": ...}`` images may be read; empty: paths are refused.
    roots: tuple[str, ...] = ()
    #: Networks (CIDR) that URL images may resolve to despite being private or loopback.
    allowed_networks: tuple[str, ...] = ()
    fetch_timeout_s: float = Field(default=10.0, gt=0)
    max_redirects: int = Field(default=3, ge=0)


class VideoSettings(_Settings):
    """How much of a screen recording ``stepper.steps`` reads; the opencv provider's options
    ``max_video_frames``, ``max_video_seconds`` and ``video_sample_fps`` override these, and a request may
    only lower the two bounds. Reading stops at the first bound reached, and the result says so (``truncated``).
    """

    #: Frames sampled (decoded and compared) from one video at most.
    max_frames: int = Field(default=3000, ge=1)
    #: Seconds of video, by the frames' timestamps, read at most.
    max_seconds: float = Field(default=600.0, gt=0)
    #: Frames sampled per second of video (by timestamp); a video with fewer gives every frame.
    sample_fps: float = Field(default=10.0, gt=0, le=240)


class DocumentSettings(_Settings):
    """Limits on documents (PDF, multi-page TIFF) given to OCR; see stepper.providers.media.documents.

    A document's bytes count against ``stepper_images`` max_bytes and each rendered page against its max_pixels.
    """

    #: Pages one document may have, or (when the request selects pages) have selected; more is refused at once.
    max_pages: int = Field(default=50, ge=1)
    #: Dots per inch a PDF page is rendered at when the request names none, and the most a request may ask.
    default_dpi: int = Field(default=300, ge=1)
    max_dpi: int = Field(default=600, ge=1)
    #: A page too large for max_pixels at the requested DPI is rendered at a lower one, down to this; below
    #: it the page is refused. Tesseract reads 10-point text poorly under about 100 dpi.
    min_dpi: int = Field(default=100, ge=1)

    @model_validator(mode="after")
    def _dpis_in_order(self) -> DocumentSettings:
        if not self.min_dpi <= self.default_dpi <= self.max_dpi:
            raise ValueError(
                f"min_dpi ({self.min_dpi}) <= default_dpi ({self.default_dpi}) <= max_dpi ({self.max_dpi}) "
                "must hold; raise max_dpi or lower the others"
            )
        return self


class ArtifactSettings(_Settings):
    """Where audio and thumbnails go; see stepper.infra.artifacts."""

    directory: str = "/tmp/stepper-artifacts"  # noqa: S108  (a default for development; deployments set it)
    #: Below this size a result carries the artifact inline (a data: URI) instead of a file reference.
    inline_max_bytes: int = Field(default=16 * 1024, ge=0)
    ttl_s: float = Field(default=7 * 24 * 3600, gt=0)


class CacheWindow(_Settings):
    fresh_s: float = Field(ge=0)
    stale_s: float = Field(ge=0)


def _default_windows() -> dict[Kind, CacheWindow]:
    """Kinds whose results point at artifacts (speech, steps) stay within the artifacts' TTL."""
    day = 86400.0
    long, short = CacheWindow(fresh_s=7 * day, stale_s=30 * day), CacheWindow(fresh_s=day, stale_s=5 * day)
    return {
        "report": long,
        "chat": CacheWindow(fresh_s=3600, stale_s=day),
        "ocr": long,
        "vision": long,
        "steps": short,
        "speech": short,
    }


class CacheSettings(_Settings):
    """Result cache; see stepper.reuse. A kind missing from ``windows`` is not cached: fresh for ``fresh_s``,
    then served stale for ``stale_s`` more while one refresh runs."""

    #: Redis for the cache; None uses the state Redis. Give it its own instance (allkeys-lru) in production.
    url: str | None = None
    windows: dict[Kind, CacheWindow] = Field(default_factory=_default_windows)
    #: How long an identical request waits for the one being computed before computing it itself.
    single_flight_wait_s: float = Field(default=300.0, ge=0)
    #: How long an idempotency key maps to its first task.
    idempotency_window_s: float = Field(default=24 * 3600, gt=0)


class WebhookSettings(_Settings):
    """Signed outcome callbacks to a request's ``callback_url``; see stepper.outcomes.webhooks."""

    #: The variable holding the HMAC-SHA256 signing secret (``<NAME>_FILE`` is read too).
    secret_env: str = "STEPPER_WEBHOOK_SECRET"  # noqa: S105  (the variable's name, not a secret)
    #: Keep retrying a failing receiver (with backoff) for this long.
    retry_for_s: float = Field(default=3600.0, gt=0)
    #: Exponential backoff with full jitter between attempts: up to base * 2**retries, at most cap (a receiver's
    #: Retry-After can ask for longer). Countdowns also stay under stepper_retry.task_countdown_cap_s.
    backoff_base_s: float = Field(default=2.0, gt=0)
    backoff_cap_s: float = Field(default=300.0, gt=0)
    timeout_s: float = Field(default=10.0, gt=0)
    #: When not empty, only these hosts may receive callbacks.
    allowed_hosts: tuple[str, ...] = ()
    #: Networks (CIDR) a callback may resolve to despite being private or loopback.
    allowed_networks: tuple[str, ...] = ()


class DeadLetterSettings(_Settings):
    """Failed tasks kept for inspection and replay; see stepper.ops.deadletters."""

    max_entries: int = Field(default=100_000, ge=1)
    ttl_s: float = Field(default=30 * 24 * 3600, gt=0)


class AlertSettings(_Settings):
    """Operational alerts to Slack and Discord; see stepper.ops.alerts. Webhook URLs are secrets, read from
    variables."""

    #: The variables holding the incoming-webhook URLs (``<NAME>_FILE`` is read too); unset: that sink is off.
    slack_webhook_url_env: str = "STEPPER_SLACK_WEBHOOK_URL"
    discord_webhook_url_env: str = "STEPPER_DISCORD_WEBHOOK_URL"
    #: How often ``stepper alerts watch`` checks (its --interval overrides it).
    interval_s: float = Field(default=30.0, gt=0)
    timeout_s: float = Field(default=10.0, gt=0)
    #: A queue with more messages waiting than this (all priority levels together) fires.
    queue_depth_threshold: int = Field(default=1000, ge=0)
    #: More new dead letters than this since the previous check fires.
    dlq_growth_threshold: int = Field(default=10, ge=0)
    #: More ChainExhausted failures than this in the previous full minute fires.
    exhausted_per_minute_threshold: int = Field(default=5, ge=0)


class RecoverySettings(_Settings):
    """Riding out a Redis restart and a dead worker; see stepper.workers.recovery."""

    #: A stepper message held by no live worker for this long goes back on its queue (kombu alone waits for
    #: the visibility timeout). Workers renew their lease four times per period.
    lease_s: float = Field(default=20.0, gt=0)
    #: How long a task's own Redis bookkeeping (cache, idempotency) waits for Redis to come back before the
    #: task is put back on its queue instead of failing.
    redis_wait_s: float = Field(default=30.0, ge=0)
    #: A task whose runs killed their worker this many times (a segfault on its input, the OOM killer) fails
    #: with PoisonMessage and goes to the dead-letter store instead of being redelivered again.
    max_deliveries: int = Field(default=3, ge=1)
    #: A worker that received no message for this long while Redis answers, its queues hold work and it has
    #: a free slot has stopped consuming: it exits (status 70) to be restarted. 0 turns the watchdog off.
    stall_s: float = Field(default=20.0, ge=0)
    #: A journaled task message older than this that is found in no queue, no unacknowledged hash and no delayed
    #: set, twice a lease apart, was lost in flight and is published again (stepper.workers.reconcile). 0: off.
    inflight_grace_s: float = Field(default=60.0, ge=0)


class RabbitMQSettings(_Settings):
    """stepper's queues on RabbitMQ (a broker URL ``amqp://``); see stepper.brokers. Ignored on Redis."""

    #: "classic": one node's durable queue with ten priority levels (``x-max-priority``). "quorum": replicated
    #: over the cluster (Raft), a delivery limit, countdowns held by RabbitMQ (Celery's native delayed delivery);
    #: no priorities before RabbitMQ 4.0 and two levels from 4.0 (see stepper.priorities).
    queue_type: Literal["classic", "quorum"] = "classic"
    #: Quorum queues: a message delivered this many times without an acknowledgement (its workers died) is
    #: dead-lettered by RabbitMQ into stepper's dead-letter store. Above ``stepper_recovery["max_deliveries"]``
    #: on purpose: stepper's own count stops a poison message first, with its request; this is the backstop.
    delivery_limit: int = Field(default=10, ge=1)


class GatewaySettings(_Settings):
    """The HTTP gateway (``stepper gateway``); see stepper.gateway. Limits apply to each key separately."""

    #: SHA-256 hex digests of the accepted API keys (``stepper gateway new-key`` prints a key and its digest).
    key_hashes: tuple[str, ...] = ()
    #: Requests and estimated tokens per minute per key, fleet-wide across gateway replicas; 0 = unlimited.
    rpm: int = Field(default=600, ge=0)
    tpm: int = Field(default=200_000, ge=0)
    #: Larger request bodies are refused with 413 (inline base64 images make bodies large).
    max_body_bytes: int = Field(default=32 * 1024 * 1024, ge=1)
    #: Browser origins allowed by CORS; empty: no CORS headers at all.
    cors_origins: tuple[str, ...] = ()
    #: How long a non-streaming chat completion waits for the task's result before answering 504.
    chat_timeout_s: float = Field(default=120.0, gt=0)

    @field_validator("key_hashes", mode="before")
    @classmethod
    def _split_and_normalise(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.split(",")
        if isinstance(value, list | tuple):
            return tuple(item.strip().lower() for item in value if isinstance(item, str) and item.strip())
        return value

    @field_validator("key_hashes")
    @classmethod
    def _digests_only(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for position, digest in enumerate(value):
            if not re.fullmatch(KEY_DIGEST_PATTERN, digest):
                # Never echo the value: someone may have pasted a key where its digest belongs.
                raise ValueError(
                    f"entry {position} ({len(digest)} characters) is not a SHA-256 hex digest (64 hex characters); "
                    "configure digests, not keys: `stepper gateway new-key` prints both"
                )
        return value


class BreakerSettings(_Settings):
    """Fleet-wide circuit breaker per provider: opens after ``fail_max`` consecutive transient failures and lets
    one probe call through (fleet-wide) after ``reset_timeout_s``."""

    fail_max: int = Field(default=5, ge=1)
    reset_timeout_s: float = Field(default=30.0, gt=0)


class RetrySettings(_Settings):
    """Inside one task, each provider gets ``attempts_per_provider`` tries, waiting with full jitter (or the
    provider's Retry-After) when that wait is at most ``max_inline_wait_s``. When every provider failed
    transiently the task goes back to the broker, up to ``task_max_retries`` times, after a countdown capped
    at ``task_countdown_cap_s``."""

    attempts_per_provider: int = Field(default=2, ge=1)
    backoff_base_s: float = Field(default=0.5, ge=0)
    backoff_cap_s: float = Field(default=8.0, ge=0)
    max_inline_wait_s: float = Field(default=2.0, ge=0)
    task_max_retries: int = Field(default=5, ge=0)
    task_countdown_cap_s: float = Field(default=300.0, ge=0)


class StepperSettings(_Settings):
    """stepper's own settings, validated once at start-up."""

    #: live: real providers only; mock: every provider replaced by a deterministic mock; hybrid: the chain's
    #: configured providers, then a mock as the last resort (always labelled).
    mode: Mode = "live"
    #: ``DEFAULT_PROVIDERS`` with the deployment's added (see :func:`stepper.config.parse_stepper_settings`).
    providers: dict[str, ProviderSettings]
    chains: dict[Kind, tuple[ChainEntry, ...]]
    #: The prefix of every Redis key stepper writes (see stepper.infra.keys); two fleets on one Redis differ here.
    key_namespace: str = Field(default="stepper", pattern=r"^[A-Za-z0-9_.-]+$")
    #: The Redis for fleet-wide state (breakers, rate limits, cache, idempotency, streams, dead letters, leases):
    #: redis://, rediss:// or sentinel:// (STEPPER_STATE_REDIS_URL). None: the broker's Redis, else the result
    #: backend's (stepper.config resolves it; a RabbitMQ broker needs one of the two to be a Redis).
    state_url: str | None = None
    visibility_timeout_s: int = Field(default=DEFAULT_VISIBILITY_TIMEOUT_S, gt=0)
    breaker: BreakerSettings = BreakerSettings()
    retry: RetrySettings = RetrySettings()
    #: What a chain does when a provider refuses the content itself (a safety filter): "stop" (the next
    #: provider would refuse too) or "next" (try it). Per kind; kinds left out stop.
    on_content_filter: dict[Kind, Literal["stop", "next"]] = Field(default_factory=dict)
    #: How long the fleet remembers that a provider's model refused an optional parameter (seconds).
    capability_ttl_s: float = Field(default=24 * 3600, gt=0)
    images: ImageSettings = ImageSettings()
    documents: DocumentSettings = DocumentSettings()
    artifacts: ArtifactSettings = ArtifactSettings()
    cache: CacheSettings = CacheSettings()
    webhooks: WebhookSettings = WebhookSettings()
    dead_letters: DeadLetterSettings = DeadLetterSettings()
    alerts: AlertSettings = AlertSettings()
    recovery: RecoverySettings = RecoverySettings()
    gateway: GatewaySettings = GatewaySettings()
    rabbitmq: RabbitMQSettings = RabbitMQSettings()

    @field_validator("chains")
    @classmethod
    def _every_kind_has_a_chain(cls, chains: dict[Kind, tuple[ChainEntry, ...]]) -> dict[Kind, tuple[ChainEntry, ...]]:
        missing = [kind for kind in KINDS if not chains.get(kind)]
        if missing:
            raise ValueError(f"no chain for {', '.join(missing)}; give each kind at least one 'provider:model'")
        return chains
