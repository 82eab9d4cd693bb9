"""stepper's settings as pydantic models: the single source of every ``stepper_*`` default.

The deployment's config module (``celeryconfig.py``) and the environment override these (see
:mod:`stepper.config`, which loads and validates them); a setting left out takes the default written here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
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

#: Prices of the models in the default chains, in US dollars per million tokens, as the vendors' pricing pages
#: listed them on 2026-12-01 (read through copies of platform.openai.com/docs/pricing,
#: ai.google.dev/gemini-api/docs/pricing and cohere.com/pricing; stepper cannot browse, so check them before
#: relying on a budget). Self-hosted Mistral, Hugging Face Spaces and the local engines cost nothing per token;
#: ElevenLabs bills characters, which these tables do not model. Override with a provider's ``prices`` or
#: ``stepper_prices``.
OPENAI_PRICES: dict[str, dict[str, float]] = {
    "gpt-4o-mini": {"input_per_mtok": 0.15, "output_per_mtok": 0.60, "cached_input_per_mtok": 0.075},
    "gpt-4o": {"input_per_mtok": 2.50, "output_per_mtok": 10.00, "cached_input_per_mtok": 1.25},
}
GEMINI_PRICES: dict[str, dict[str, float]] = {
    "gemini-2.0-flash": {"input_per_mtok": 0.10, "output_per_mtok": 0.40, "cached_input_per_mtok": 0.025},
}
COHERE_PRICES: dict[str, dict[str, float]] = {
    "command-r-plus-08-2024": {"input_per_mtok": 2.50, "output_per_mtok": 10.00},
}

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
        "prices": OPENAI_PRICES,
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
        "prices": GEMINI_PRICES,
    },
    "cohere": {
        "class": "stepper.providers.cohere:CohereProvider",
        "kinds": ["chat", "report"],
        "api_key_env": "COHERE_API_KEY",
        "models": ["command-r-plus-08-2024"],
        "prices": COHERE_PRICES,
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


class SpendBudget(_Settings):
    """What may be spent per UTC day and per UTC month, in the prices' currency; None: no cap.

    Checked before each call and charged after it with the vendor's real usage (stepper.guards.spend), so calls
    already in flight when a budget runs out can overshoot it by at most one call's cost each."""

    per_day: float | None = Field(default=None, gt=0)
    per_month: float | None = Field(default=None, gt=0)

    def limits(self) -> dict[Window, float]:
        """The capped windows: ``{"day": 20.0, "month": 400.0}``."""
        given = {"day": self.per_day, "month": self.per_month}
        return {window: limit for window, limit in given.items() if limit is not None}  # type: ignore[misc]


class TokenBudget(SpendBudget):
    """An LLM's token budget of one call (input, output) and, optionally, its spend caps (``per_day``...)."""

    input_tokens: int = Field(default=4096, ge=1)
    output_tokens: int = Field(default=2048, ge=1)


class Price(_Settings):
    """What one model costs per million tokens. Cached input tokens (a subset of the input tokens, reported as
    ``cached_input_tokens``) cost ``cached_input_per_mtok``, or the input price when the table gives none."""

    input_per_mtok: float = Field(ge=0)
    output_per_mtok: float = Field(ge=0)
    cached_input_per_mtok: float | None = Field(default=None, ge=0)
    currency: str = Field(default="USD", pattern=r"^[A-Z]{3}$")

    def cost(self, usage: Mapping[str, Any]) -> float:
        """The cost of one call's ``usage`` (``input_tokens``, ``cached_input_tokens``, ``output_tokens``)."""
        input_tokens = _count(usage, "input_tokens")
        cached = min(_count(usage, "cached_input_tokens"), input_tokens)
        cached_price = self.input_per_mtok if self.cached_input_per_mtok is None else self.cached_input_per_mtok
        micro = (
            (input_tokens - cached) * self.input_per_mtok
            + cached * cached_price
            + _count(usage, "output_tokens") * self.output_per_mtok
        )
        return micro / 1_000_000


def _count(usage: Mapping[str, Any], name: str) -> int:
    value = usage.get(name, 0)
    return int(value) if isinstance(value, int | float) and value > 0 else 0


Strategy = Literal["weighted", "least-busy", "latency"]
Window = Literal["day", "month"]


class Deployment(_Settings):
    """One deployment of a provider's models: a base URL and/or a key of its own, with its own breaker, cooldown
    and rate limits. Fields left out take the provider's."""

    base_url: str | None = None
    api_key_env: str | None = None
    #: The share of calls ``weighted`` sends here (relative to the other deployments' weights).
    weight: float = Field(default=1.0, gt=0)
    #: How attempts, metrics and ``stepper status`` name it; default: its index in the list ("0", "1"...).
    label: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]{1,40}$")
    rpm: int | None = Field(default=None, ge=0)
    tpm: int | None = Field(default=None, ge=0)


@dataclass(frozen=True)
class DeploymentTarget:
    """One deployment, resolved: ``guard`` names its breaker, cooldown and rate limits (``provider`` for a
    provider without ``deployments``, ``provider#label`` otherwise); ``settings`` are the provider's with this
    deployment's base URL, key variable and limits."""

    label: str | None
    guard: str
    weight: float
    settings: ProviderSettings


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
    #: The spend caps of the provider as a whole (``per_day``, ``per_month``) ride on ``budget``; those in
    #: ``budgets`` cap one model on this provider.
    budget: TokenBudget = TokenBudget()
    budgets: dict[str, TokenBudget] = Field(default_factory=dict)
    #: Prices per model (``stepper_prices`` overrides them); a model without one costs nothing in ``usage``.
    prices: dict[str, Price] = Field(default_factory=dict)
    #: Several deployments of the same models (replicas, keys); empty: one, at ``base_url`` with ``api_key_env``.
    deployments: tuple[Deployment, ...] = ()
    #: How a call picks among ``deployments``, fleet-wide: ``weighted`` (random by weight), ``least-busy`` (fewest
    #: calls in flight across the fleet), ``latency`` (lowest recent latency, exploring now and then).
    strategy: Strategy = "weighted"
    options: dict[str, Any] = Field(default_factory=dict)

    def budget_for(self, model: str) -> TokenBudget:
        return self.budgets.get(model, self.budget)

    def targets(self) -> tuple[DeploymentTarget, ...]:
        """The deployments to pick from: one per ``deployments`` entry, or the provider itself."""
        if not self.deployments:
            return (DeploymentTarget(None, self.name, 1.0, self),)
        targets = []
        for index, deployment in enumerate(self.deployments):
            label = deployment.label or str(index)
            update = {
                "base_url": deployment.base_url or self.base_url,
                "api_key_env": deployment.api_key_env or self.api_key_env,
                "rpm": self.rpm if deployment.rpm is None else deployment.rpm,
                "tpm": self.tpm if deployment.tpm is None else deployment.tpm,
                "deployments": (),
            }
            targets.append(
                DeploymentTarget(label, f"{self.name}#{label}", deployment.weight, self.model_copy(update=update))
            )
        return tuple(targets)

    @field_validator("deployments")
    @classmethod
    def _labels_unique(cls, deployments: tuple[Deployment, ...]) -> tuple[Deployment, ...]:
        labels = [deployment.label or str(index) for index, deployment in enumerate(deployments)]
        repeated = sorted({label for label in labels if labels.count(label) > 1})
        if repeated:
            raise ValueError(f"deployment label(s) {', '.join(repeated)} used twice; give each deployment its own")
        return deployments

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
    #: Pages one request may read across all its ``images`` entries (an image counts one, a document its
    #: selected pages); counted before any page is read, and more is refused at once.
    max_request_pages: int = Field(default=200, ge=1)
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


class OcrSettings(_Settings):
    """How tesseract's pages are prepared before reading; see stepper.providers.media.scans.

    Each step was measured alone with ``python -m bench.ocr_quality --steps`` on public pages with ground
    truth (tesseract's phototest and eurotext, the UNLV magazine scans 8071 and 8087, and those two scans
    tilted by 4 degrees and at 100 dpi), as bag-of-words accuracy (% of words; see bench.ocr_quality): a step
    is on by default only when it raised accuracy on some page and lowered it on none.
    """

    #: Straighten a page whose text lines lean (a sheet fed askew): on. Measured: 8071 as scanned (leaning
    #: 0.35 degrees) 98.3 -> 98.8; tilted by 4 degrees, 8071 95.5 -> 98.6 and 8087 91.9 -> 94.1; 8071 at
    #: 100 dpi 94.8 -> 96.0; no other page changed (eurotext, leaning 0.75 degrees, stays 89.4).
    deskew: bool = True
    #: Largest lean looked for, either way (degrees); a page turned further is a rotation, not a skew.
    max_skew_deg: float = Field(default=10.0, gt=0, le=45)
    #: A lean smaller than this is left alone: tesseract follows such lines itself.
    min_skew_deg: float = Field(default=0.25, ge=0)
    #: Enlarge a page whose median glyph is shorter than this (pixels), a page scanned under about 150 dpi,
    #: so that it reaches ``glyph_target_px``; 0 turns it off. Measured: at 100 dpi (glyphs of 6-7 px) 8071
    #: 94.8 -> 97.2 and 8087 90.9 -> 93.5; no page at 200-300 dpi is touched. Enlarging pages at 150 dpi
    #: (10-12 px) too lowered 8071's ordered accuracy from 96.3 to 90.4 in a trial, hence the threshold.
    enlarge_glyphs_below_px: float = Field(default=10.0, ge=0)
    glyph_target_px: float = Field(default=30.0, gt=0)
    #: Binarise with a threshold per neighbourhood (OpenCV's Gaussian adaptive threshold), which evens out
    #: shadows and erases large dark areas: off. Measured: 8071 tilted 95.5 -> 96.5 (the photograph and the
    #: scanner's black border, read as junk otherwise, are erased), but at 100 dpi 8071 94.8 -> 88.0 and 8087
    #: 90.9 -> 83.1, and 8087 tilted 91.9 -> 91.0 (its ordered accuracy 87.9 -> 51.4).
    adaptive_binarisation: bool = False
    #: Side of the neighbourhood (pixels, odd) and how much darker than its weighted mean a pixel must be
    #: to count as ink (0-255).
    binarisation_block_px: int = Field(default=31, ge=3)
    binarisation_offset: float = Field(default=15.0, ge=0, le=255)

    @field_validator("binarisation_block_px")
    @classmethod
    def _odd(cls, value: int) -> int:
        if value % 2 == 0:
            raise ValueError(f"binarisation_block_px must be odd (OpenCV's adaptiveThreshold), not {value}")
        return value

    @model_validator(mode="after")
    def _skews_in_order(self) -> OcrSettings:
        if self.min_skew_deg >= self.max_skew_deg:
            raise ValueError(f"min_skew_deg ({self.min_skew_deg}) must be below max_skew_deg ({self.max_skew_deg})")
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


#: Renewals per ``stepper_recovery["lease_s"]`` of every lease stepper keeps (a worker's on the messages it holds,
#: a run's on the computation it claimed): a live holder misses three in a row before its lease runs out.
RENEWALS_PER_LEASE = 4


class RecoverySettings(_Settings):
    """Riding out a Redis restart and a dead worker; see stepper.workers.recovery."""

    #: A stepper message held by no live worker for this long goes back on its queue (kombu alone waits for
    #: the visibility timeout). Workers renew their lease four times per period (RENEWALS_PER_LEASE). Also the
    #: lease of a claim on a computation in flight (single flight, an idempotency key), renewed as often while
    #: it runs (stepper.reuse.leases): a dead worker's claim runs out this long after its last renewal.
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
    #: What each key may spend per UTC day and month (the tasks it submits, at the providers' prices), and
    #: budgets of particular keys by their identity (the first 8 hex characters of the digest); over it: 429.
    budget: SpendBudget = SpendBudget()
    budgets: dict[str, SpendBudget] = Field(default_factory=dict)

    def budget_for(self, identity: str) -> SpendBudget:
        return self.budgets.get(identity, self.budget)

    @field_validator("budgets")
    @classmethod
    def _identities_only(cls, budgets: dict[str, SpendBudget]) -> dict[str, SpendBudget]:
        for identity in budgets:
            if not re.fullmatch(r"[0-9a-f]{8}", identity):
                # Never echo it: it may be a key pasted where its identity belongs.
                raise ValueError(
                    f"budgets: a key ({len(identity)} characters) is not a key's identity; name keys by the first 8 "
                    "hex characters of their digest (`stepper gateway new-key` prints it as the identity)"
                )
        return budgets

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
    ocr: OcrSettings = OcrSettings()
    artifacts: ArtifactSettings = ArtifactSettings()
    cache: CacheSettings = CacheSettings()
    webhooks: WebhookSettings = WebhookSettings()
    dead_letters: DeadLetterSettings = DeadLetterSettings()
    alerts: AlertSettings = AlertSettings()
    recovery: RecoverySettings = RecoverySettings()
    gateway: GatewaySettings = GatewaySettings()
    rabbitmq: RabbitMQSettings = RabbitMQSettings()

    #: Prices by provider and model, over those the providers declare: ``{"openai": {"gpt-4o": {...}}}``.
    prices: dict[str, dict[str, Price]] = Field(default_factory=dict)

    def price_for(self, provider: str, model: str) -> Price | None:
        """What ``model`` costs on ``provider``, or None when no table prices it."""
        override = self.prices.get(provider, {}).get(model)
        declared = self.providers[provider].prices.get(model) if provider in self.providers else None
        return override or declared

    def currency(self) -> str:
        """The one currency every price (and so every budget) is in; USD when nothing is priced."""
        return next(iter(self._currencies()), "USD")

    def _currencies(self) -> set[str]:
        tables = [provider.prices for provider in self.providers.values()] + list(self.prices.values())
        return {price.currency for table in tables for price in table.values()}

    @model_validator(mode="after")
    def _one_currency(self) -> StepperSettings:
        currencies = self._currencies()
        if len(currencies) > 1:
            raise ValueError(
                f"prices are in several currencies ({', '.join(sorted(currencies))}); budgets add costs up across "
                "providers, so give every price in one currency"
            )
        return self

    @field_validator("chains")
    @classmethod
    def _every_kind_has_a_chain(cls, chains: dict[Kind, tuple[ChainEntry, ...]]) -> dict[Kind, tuple[ChainEntry, ...]]:
        missing = [kind for kind in KINDS if not chains.get(kind)]
        if missing:
            raise ValueError(f"no chain for {', '.join(missing)}; give each kind at least one 'provider:model'")
        return chains
