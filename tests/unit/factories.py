"""Small builders shared by the unit tests: settings made in code, without a config module or the environment."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from stepper.schemas import KINDS, Kind
from stepper.settings import (
    BreakerSettings,
    ChainEntry,
    Mode,
    ProviderSettings,
    RetrySettings,
    StepperSettings,
)

MOCK_SPEC: dict[str, Any] = {"class": "stepper.providers.mock:MockProvider"}


def provider_settings(name: str, **spec: Any) -> ProviderSettings:
    """One provider; ``class`` defaults to a dotted path that is never imported (tests register classes)."""
    return ProviderSettings.model_validate({"name": name, "class": f"tests.unit.fake:{name.title()}", **spec})


def retry_settings(**overrides: Any) -> RetrySettings:
    values: dict[str, Any] = {
        "attempts_per_provider": 2,
        "backoff_base_s": 0.01,
        "backoff_cap_s": 0.05,
        "max_inline_wait_s": 2.0,
        "task_max_retries": 3,
        "task_countdown_cap_s": 60.0,
    }
    return RetrySettings.model_validate({**values, **overrides})


def stepper_settings(
    *,
    mode: Mode = "live",
    providers: Mapping[str, Mapping[str, Any]] | None = None,
    chains: Mapping[Kind, Sequence[str]] | None = None,
    breaker: BreakerSettings | None = None,
    retry: RetrySettings | None = None,
    on_content_filter: Mapping[Kind, str] | None = None,
    prices: Mapping[str, Mapping[str, Any]] | None = None,
) -> StepperSettings:
    """Settings with a ``mock`` provider always declared and every kind not in ``chains`` served by it."""
    declared = {"mock": provider_settings("mock", **MOCK_SPEC)}
    for name, spec in (providers or {}).items():
        declared[name] = provider_settings(name, **spec)
    chain_texts: dict[Kind, Sequence[str]] = {kind: [f"mock:mock-{kind}"] for kind in KINDS}
    chain_texts.update(chains or {})
    return StepperSettings(
        mode=mode,
        providers=declared,
        chains={kind: tuple(ChainEntry.parse(text) for text in texts) for kind, texts in chain_texts.items()},
        breaker=breaker or BreakerSettings(fail_max=100, reset_timeout_s=30.0),
        retry=retry or retry_settings(),
        on_content_filter=dict(on_content_filter or {}),
        prices=dict(prices or {}),
    )
