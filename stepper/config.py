"""Loading settings: package defaults, then the deployment's config module, then the environment.

Celery's own ``config_from_object("celeryconfig", silent=True)`` is lazy and raises later when the module is
missing, so stepper checks importability itself and hands Celery one plain, already merged mapping.
"""

from __future__ import annotations

import copy
import importlib
import importlib.util
import os
import re
from collections.abc import Mapping
from functools import cache
from types import ModuleType
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from stepper.defaults import DEFAULTS
from stepper.errors import ConfigError
from stepper.schemas import KINDS, Kind, describe_validation_error

Mode = Literal["live", "mock", "hybrid"]

#: Settings whose dict values are merged key by key instead of replaced, so that a deployment adding
#: one provider or one transport option keeps the others.
MERGED_SETTINGS = (
    "broker_transport_options",
    "result_backend_transport_options",
    "stepper_providers",
    "stepper_chains",
    "stepper_breaker",
    "stepper_retry",
    "stepper_images",
    "stepper_artifacts",
    "stepper_cache",
    "stepper_webhooks",
    "stepper_dead_letters",
    "stepper_alerts",
    "stepper_recovery",
    "stepper_gateway",
)

#: A gateway key is configured as the SHA-256 hex digest of the key, never the key itself.
KEY_DIGEST_PATTERN = r"^[0-9a-f]{64}$"


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
    timeout_s: float = Field(default=30.0, gt=0)
    connect_timeout_s: float = Field(default=5.0, gt=0)
    rpm: int = Field(default=0, ge=0, description="requests per minute, fleet-wide; 0 = unlimited")
    tpm: int = Field(default=0, ge=0, description="tokens per minute, fleet-wide; 0 = unlimited")
    #: LLMs: the token budget of a model not listed in ``budgets``, and per-model budgets.
    budget: TokenBudget = TokenBudget()
    budgets: dict[str, TokenBudget] = Field(default_factory=dict)
    options: dict[str, Any] = Field(default_factory=dict)

    def budget_for(self, model: str) -> TokenBudget:
        return self.budgets.get(model, self.budget)


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
    """Limits on image input; see stepper.media.images."""

    max_bytes: int = Field(default=20 * 1024 * 1024, ge=1)
    max_pixels: int = Field(default=40_000_000, ge=1)
    #: Directories under which ``{"path": ...}`` images may be read; empty: paths are refused.
    roots: tuple[str, ...] = ()
    #: Networks (CIDR) that URL images may resolve to despite being private or loopback.
    allowed_networks: tuple[str, ...] = ()
    fetch_timeout_s: float = Field(default=10.0, gt=0)
    max_redirects: int = Field(default=3, ge=0)


class ArtifactSettings(_Settings):
    """Where audio and thumbnails go; see stepper.artifacts."""

    directory: str = "/tmp/stepper-artifacts"  # noqa: S108  (a default for development; deployments set it)
    #: Below this size a result carries the artifact inline (a data: URI) instead of a file reference.
    inline_max_bytes: int = Field(default=16 * 1024, ge=0)
    ttl_s: float = Field(default=7 * 24 * 3600, gt=0)


class CacheWindow(_Settings):
    fresh_s: float = Field(ge=0)
    stale_s: float = Field(ge=0)


class CacheSettings(_Settings):
    """Result cache; see stepper.cache. A kind missing from ``windows`` is not cached."""

    #: Redis for the cache; None uses the state Redis. Give it its own instance (allkeys-lru) in production.
    url: str | None = None
    windows: dict[Kind, CacheWindow] = Field(default_factory=dict)
    #: How long an identical request waits for the one being computed before computing it itself.
    single_flight_wait_s: float = Field(default=300.0, ge=0)
    #: How long an idempotency key maps to its first task.
    idempotency_window_s: float = Field(default=24 * 3600, gt=0)


class WebhookSettings(_Settings):
    """Signed outcome callbacks to a request's ``callback_url``; see stepper.webhooks."""

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
    """Failed tasks kept for inspection and replay; see stepper.dlq."""

    max_entries: int = Field(default=100_000, ge=1)
    ttl_s: float = Field(default=30 * 24 * 3600, gt=0)


class AlertSettings(_Settings):
    """Operational alerts to Slack and Discord; see stepper.alerts. Webhook URLs are secrets: read from variables."""

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
    fail_max: int = Field(ge=1)
    reset_timeout_s: float = Field(gt=0)


class RetrySettings(_Settings):
    attempts_per_provider: int = Field(ge=1)
    backoff_base_s: float = Field(ge=0)
    backoff_cap_s: float = Field(ge=0)
    max_inline_wait_s: float = Field(ge=0)
    task_max_retries: int = Field(ge=0)
    task_countdown_cap_s: float = Field(ge=0)


class StepperSettings(_Settings):
    """stepper's own settings, validated once at start-up."""

    mode: Mode
    providers: dict[str, ProviderSettings]
    chains: dict[Kind, tuple[ChainEntry, ...]]
    breaker: BreakerSettings
    retry: RetrySettings
    images: ImageSettings = ImageSettings()
    artifacts: ArtifactSettings = ArtifactSettings()
    cache: CacheSettings = CacheSettings()
    webhooks: WebhookSettings = WebhookSettings()
    dead_letters: DeadLetterSettings = DeadLetterSettings()
    alerts: AlertSettings = AlertSettings()
    recovery: RecoverySettings = RecoverySettings()
    gateway: GatewaySettings = GatewaySettings()

    @field_validator("chains")
    @classmethod
    def _every_kind_has_a_chain(cls, chains: dict[Kind, tuple[ChainEntry, ...]]) -> dict[Kind, tuple[ChainEntry, ...]]:
        missing = [kind for kind in KINDS if not chains.get(kind)]
        if missing:
            raise ValueError(f"no chain for {', '.join(missing)}; give each kind at least one 'provider:model'")
        return chains


def load_config(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Merge defaults, the deployment's config module and the environment into one mapping."""
    environ = os.environ if environ is None else environ
    merged = copy.deepcopy(DEFAULTS)
    module = _import_config_module(environ.get("CELERY_CONFIG_MODULE", "celeryconfig"))
    if module is not None:
        _merge(merged, {key: value for key, value in vars(module).items() if _is_setting(key, value)})
    _merge(merged, _environment_overrides(environ, merged))
    _apply_visibility_timeout(merged)
    return merged


def parse_stepper_settings(config: Mapping[str, Any]) -> StepperSettings:
    """Validate the ``stepper_*`` part of a merged config; raise ConfigError naming the bad setting."""
    providers = {name: _provider_settings(name, spec) for name, spec in config["stepper_providers"].items()}
    try:
        chains = {
            kind: tuple(ChainEntry.parse(entry) for entry in entries)
            for kind, entries in config["stepper_chains"].items()
        }
        settings = StepperSettings(
            mode=config["stepper_mode"],
            providers=providers,
            chains=chains,
            breaker=config["stepper_breaker"],
            retry=config["stepper_retry"],
            images=config.get("stepper_images", {}),
            artifacts=config.get("stepper_artifacts", {}),
            cache=config.get("stepper_cache", {}),
            webhooks=config.get("stepper_webhooks", {}),
            dead_letters=config.get("stepper_dead_letters", {}),
            alerts=config.get("stepper_alerts", {}),
            recovery=config.get("stepper_recovery", {}),
            gateway=config.get("stepper_gateway", {}),
        )
    except ValidationError as exc:
        raise ConfigError(f"invalid stepper settings: {describe_validation_error(exc)}") from None
    _check_chains_name_known_providers(settings)
    _check_time_limits(config, settings)
    return settings


@cache
def current_config() -> dict[str, Any]:
    """The merged configuration of this process (read once)."""
    return load_config()


@cache
def current_settings() -> StepperSettings:
    """The validated stepper settings of this process (read once)."""
    return parse_stepper_settings(current_config())


def _import_config_module(name: str) -> ModuleType | None:
    try:
        found = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        found = None
    if found is None:
        return None
    return importlib.import_module(name)


def _is_setting(key: str, value: object) -> bool:
    """Lowercase public names are settings; a module the config file imported (``import os``) is not."""
    return key.islower() and not key.startswith("_") and not isinstance(value, ModuleType)


def _merge(target: dict[str, Any], overrides: Mapping[str, Any]) -> None:
    for key, value in overrides.items():
        if key in MERGED_SETTINGS and isinstance(value, Mapping):
            target[key] = {**target.get(key, {}), **copy.deepcopy(dict(value))}
        else:
            target[key] = copy.deepcopy(value)


def _environment_overrides(environ: Mapping[str, str], config: Mapping[str, Any]) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    if redis_url := environ.get("STEPPER_REDIS_URL"):
        overrides["broker_url"] = overrides["result_backend"] = redis_url
    if mode := environ.get("STEPPER_MODE"):
        overrides["stepper_mode"] = mode
    if key_hashes := environ.get("STEPPER_GATEWAY_KEY_HASHES"):
        overrides["stepper_gateway"] = {"key_hashes": key_hashes}  # merged: the other gateway settings stay
    chains = {
        kind: [entry for entry in environ[f"STEPPER_CHAIN_{kind.upper()}"].split(",") if entry.strip()]
        for kind in KINDS
        if environ.get(f"STEPPER_CHAIN_{kind.upper()}")
    }
    if chains:
        overrides["stepper_chains"] = chains
    providers: dict[str, Any] = {}
    for name, spec in config["stepper_providers"].items():
        if base_url := environ.get(f"STEPPER_{name.upper()}_BASE_URL"):
            providers[name] = {**spec, "base_url": base_url}
    if providers:
        overrides["stepper_providers"] = providers
    return overrides


def _apply_visibility_timeout(config: dict[str, Any]) -> None:
    timeout = config["stepper_visibility_timeout_s"]
    for key in ("broker_transport_options", "result_backend_transport_options"):
        config[key] = {**config[key], "visibility_timeout": timeout}


def _provider_settings(name: str, spec: Mapping[str, Any]) -> ProviderSettings:
    try:
        return ProviderSettings.model_validate({"name": name, **spec})
    except ValidationError as exc:
        raise ConfigError(f"invalid stepper_providers[{name!r}]: {describe_validation_error(exc)}") from None


def _check_chains_name_known_providers(settings: StepperSettings) -> None:
    for kind, chain in settings.chains.items():
        for entry in chain:
            provider = settings.providers.get(entry.provider)
            if provider is None:
                known = ", ".join(sorted(settings.providers))
                raise ConfigError(
                    f"the {kind} chain names provider {entry.provider!r}, which is not declared in "
                    f"stepper_providers (declared: {known}); declare it or remove it from the chain"
                )
            if provider.kinds is not None and kind not in provider.kinds:
                raise ConfigError(
                    f"the {kind} chain names provider {entry.provider!r}, which serves only "
                    f"{', '.join(provider.kinds)}; remove it from the {kind} chain"
                )


def _check_time_limits(config: Mapping[str, Any], settings: StepperSettings) -> None:
    soft, hard = config.get("task_soft_time_limit"), config.get("task_time_limit")
    visibility = config["stepper_visibility_timeout_s"]
    if soft is not None and hard is not None and soft >= hard:
        raise ConfigError(f"task_soft_time_limit ({soft}s) must be below task_time_limit ({hard}s)")
    longest = max(hard or 0, settings.retry.task_countdown_cap_s)
    if visibility <= longest:
        raise ConfigError(
            f"stepper_visibility_timeout_s ({visibility}s) must exceed both task_time_limit and "
            f"stepper_retry.task_countdown_cap_s ({longest}s), or Redis hands a running task to a second worker"
        )
