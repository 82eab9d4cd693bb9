"""Loading settings: package defaults, then the deployment's config module, then the environment.

Celery's own ``config_from_object("celeryconfig", silent=True)`` is lazy and raises later when the module is
missing, so stepper checks importability itself and hands Celery one plain, already merged mapping. The
``stepper_*`` defaults are the models' in :mod:`stepper.settings`; Celery's, as stepper sets them, are here.
"""

from __future__ import annotations

import copy
import importlib
import importlib.util
import os
from collections.abc import Mapping
from functools import cache
from types import ModuleType
from typing import Any

from pydantic import ValidationError

from stepper.brokers import REDIS_TRANSPORTS, broker_kind, is_redis_url, scheme_of, split_sentinel_url
from stepper.errors import ConfigError
from stepper.priorities import PRIORITY_STEPS
from stepper.schemas import KINDS, describe_validation_error
from stepper.settings import (
    DEFAULT_CHAINS,
    DEFAULT_PROVIDERS,
    DEFAULT_VISIBILITY_TIMEOUT_S,
    ChainEntry,
    ProviderSettings,
    StepperSettings,
)

REDIS_URL = "redis://127.0.0.1:6379/0"

#: The three connections, each configurable alone (``STEPPER_REDIS_URL`` sets the first two and, through them,
#: the third): the broker (redis://, sentinel://, amqp://), the result backend, and the fleet's state (a Redis).
CONNECTION_VARIABLES = {
    "STEPPER_BROKER_URL": "broker_url",
    "STEPPER_RESULT_BACKEND": "result_backend",
    "STEPPER_STATE_REDIS_URL": "stepper_state_url",
}

#: Celery's settings as stepper runs it. The reliability settings are not meant to be edited; each says why.
CELERY_DEFAULTS: dict[str, Any] = {
    "broker_url": REDIS_URL,
    "result_backend": REDIS_URL,
    # JSON only: a pickled message would let anyone who can write to Redis run code on the workers.
    "task_serializer": "json",
    "result_serializer": "json",
    "accept_content": ["json"],
    "result_accept_content": ["json"],
    # A task is acknowledged only after it finished, and a pool process killed mid-task (OOM killer,
    # SIGKILL) gets its message requeued instead of acked: no task is lost to a crashed worker.
    "task_acks_late": True,
    "task_reject_on_worker_lost": True,
    # Each pool process reserves one message at a time, so one slow task never holds others hostage
    # and a high-priority message is not stuck behind a prefetched backlog.
    "worker_prefetch_multiplier": 1,
    # A worker that starts before Redis keeps trying instead of exiting.
    "broker_connection_retry_on_startup": True,
    # A task running when the broker connection drops keeps running: it waits out the outage, stores its
    # result and the message is acknowledged, or restored by stepper's recovery sweep (which never takes a
    # message a live worker still holds) and answered from that stored result. Cancelling it (prefork can)
    # threw away work that had often already reached the provider, and the redelivery called it again.
    "worker_cancel_long_running_tasks_on_connection_loss": False,
    # A Redis blip while storing a result retries instead of losing the result.
    "result_backend_always_retry": True,
    "result_backend_max_retries": 10,
    # Results are read by producers within minutes; a day is generous and keeps Redis from filling
    # up with the results of fire-and-forget tasks.
    "result_expires": 24 * 3600,
    # soft limit < hard limit < visibility timeout (checked at start-up): a task is stopped before
    # Redis would consider its message lost and hand it to a second worker.
    "task_soft_time_limit": 240,
    "task_time_limit": 300,
    # Task events cost about a fifth of the throughput; Flower switches them on while it runs.
    "worker_send_task_events": False,
    "task_send_sent_event": False,
    # The middle of the ten levels; see stepper.priorities for the named levels.
    "task_default_priority": 5,
    "broker_transport_options": {
        "priority_steps": list(PRIORITY_STEPS),
        # kombu asks for the queues priority-major (level 0 of every queue before level 1 of any), whatever the
        # order of the queues within a level; round robin rotates that order after each message, so that a
        # backlog on one queue does not starve the others at its level (a fixed order would).
        "queue_order_strategy": "round_robin",
        # A silently dead connection (a restarted Redis behind NAT, a failover) must be noticed, not waited on
        # forever: TCP keepalive, a bounded connect and (synchronous) command time, and kombu's health check,
        # which also drops a BRPOP connection whose reply is overdue (kombu 5.7).
        "socket_keepalive": True,
        "socket_connect_timeout": 5,
        "socket_timeout": 30,
        "health_check_interval": 25,
    },
    "result_backend_transport_options": {},
    # Celery's Redis result backends, storing each result in one round trip (stepper.infra.result_backend).
    "override_backends": {
        "redis": "stepper.infra.result_backend:RedisBackend",
        "rediss": "stepper.infra.result_backend:RedisBackend",
        "sentinel": "stepper.infra.result_backend:SentinelBackend",
    },
    # The same for the result backend's connections (Celery's redis_* settings; its default keepalive is off).
    "redis_socket_keepalive": True,
    "redis_socket_connect_timeout": 5,
    "redis_backend_health_check_interval": 25,
}

#: Settings whose dict values are merged key by key instead of replaced, so that a deployment adding
#: one provider or one transport option keeps the others.
MERGED_SETTINGS = (
    "broker_transport_options",
    "result_backend_transport_options",
    "override_backends",
    "stepper_providers",
    "stepper_chains",
    "stepper_breaker",
    "stepper_retry",
    "stepper_on_content_filter",
    "stepper_images",
    "stepper_documents",
    "stepper_ocr",
    "stepper_artifacts",
    "stepper_cache",
    "stepper_webhooks",
    "stepper_dead_letters",
    "stepper_alerts",
    "stepper_recovery",
    "stepper_gateway",
    "stepper_prices",
    "stepper_rabbitmq",
)


def load_config(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Merge defaults, the deployment's config module and the environment into one mapping."""
    environ = os.environ if environ is None else environ
    merged = copy.deepcopy(
        {**CELERY_DEFAULTS, "stepper_providers": DEFAULT_PROVIDERS, "stepper_chains": DEFAULT_CHAINS}
    )
    module = _import_config_module(environ.get("CELERY_CONFIG_MODULE", "celeryconfig"))
    if module is not None:
        _merge(merged, {key: value for key, value in vars(module).items() if _is_setting(key, value)})
    _merge(merged, _environment_overrides(environ, merged))
    _apply_visibility_timeout(merged)
    _apply_broker(merged)
    return merged


def parse_stepper_settings(config: Mapping[str, Any]) -> StepperSettings:
    """Validate the ``stepper_*`` part of a merged config; raise ConfigError naming the bad setting."""
    declared = {**DEFAULT_PROVIDERS, **config.get("stepper_providers", {})}
    providers = {name: _provider_settings(name, spec) for name, spec in declared.items()}
    try:
        chains = {
            kind: tuple(ChainEntry.parse(entry) for entry in entries)
            for kind, entries in {**DEFAULT_CHAINS, **config.get("stepper_chains", {})}.items()
        }
        given = {
            field: config[f"stepper_{field}"]
            for field in (
                "mode",
                "key_namespace",
                "state_url",
                "visibility_timeout_s",
                "breaker",
                "retry",
                "on_content_filter",
                "capability_ttl_s",
            )
            if config.get(f"stepper_{field}") is not None
        }
        settings = StepperSettings(
            providers=providers,
            chains=chains,
            **given,
            images=config.get("stepper_images", {}),
            documents=config.get("stepper_documents", {}),
            ocr=config.get("stepper_ocr", {}),
            artifacts=config.get("stepper_artifacts", {}),
            cache=config.get("stepper_cache", {}),
            webhooks=config.get("stepper_webhooks", {}),
            dead_letters=config.get("stepper_dead_letters", {}),
            alerts=config.get("stepper_alerts", {}),
            recovery=config.get("stepper_recovery", {}),
            gateway=config.get("stepper_gateway", {}),
            prices=config.get("stepper_prices", {}),
            rabbitmq=config.get("stepper_rabbitmq", {}),
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
    for variable, setting in CONNECTION_VARIABLES.items():
        if url := environ.get(variable):
            overrides[setting] = url
    if queue_type := environ.get("STEPPER_RABBITMQ_QUEUE_TYPE"):
        overrides["stepper_rabbitmq"] = {"queue_type": queue_type}  # merged: the delivery limit stays
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
    timeout = config.get("stepper_visibility_timeout_s") or DEFAULT_VISIBILITY_TIMEOUT_S
    for key in ("broker_transport_options", "result_backend_transport_options"):
        config[key] = {**config[key], "visibility_timeout": timeout}


def resolve_state_url(config: Mapping[str, Any]) -> str:
    """The fleet state's Redis: ``stepper_state_url``, else the broker's Redis, else the result backend's.
    ConfigError when none of the three is a Redis (a RabbitMQ broker with another result backend)."""
    for candidate in (config.get("stepper_state_url"), config.get("broker_url"), config.get("result_backend")):
        if candidate and is_redis_url(str(candidate)):
            return str(candidate)
    given = config.get("stepper_state_url")
    raise ConfigError(
        (f"stepper_state_url {given!r} is not a Redis URL" if given else "no Redis for the fleet's state")
        + ": set STEPPER_STATE_REDIS_URL (or stepper_state_url) to redis://, rediss:// or sentinel://...?master_name="
        "; breakers, rate limits, the cache, idempotency keys, streams and dead letters live there"
    )


def _apply_broker(config: dict[str, Any]) -> None:
    """Resolve the state's Redis, choose the Redis transport, then give Sentinel URLs' master name to kombu and
    Celery as transport options, and, on RabbitMQ, publisher confirms (a publish returns once the broker has the
    message)."""
    config["stepper_state_url"] = resolve_state_url(config)
    broker = broker_kind(str(config["broker_url"]))
    # kombu's Redis transport with its clients reused, unless the deployment chose a transport itself.
    config.setdefault("broker_transport", REDIS_TRANSPORTS.get(scheme_of(str(config["broker_url"]))))
    config["broker_url"], broker_options = split_sentinel_url(str(config["broker_url"]))
    if broker == "amqp":
        broker_options = {**broker_options, "confirm_publish": True}
    config["broker_transport_options"] = {**config["broker_transport_options"], **broker_options}
    if isinstance(config.get("result_backend"), str):
        config["result_backend"], backend_options = split_sentinel_url(config["result_backend"])
        config["result_backend_transport_options"] = {**config["result_backend_transport_options"], **backend_options}


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
    visibility = settings.visibility_timeout_s
    if soft is not None and hard is not None and soft >= hard:
        raise ConfigError(f"task_soft_time_limit ({soft}s) must be below task_time_limit ({hard}s)")
    longest = max(hard or 0, settings.retry.task_countdown_cap_s)
    if visibility <= longest:
        raise ConfigError(
            f"stepper_visibility_timeout_s ({visibility}s) must exceed both task_time_limit and "
            f"stepper_retry.task_countdown_cap_s ({longest}s), or Redis hands a running task to a second worker"
        )
