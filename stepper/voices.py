"""The voices of every speech provider in the chain that can run here."""

from __future__ import annotations

from typing import Any

from stepper.config import StepperSettings
from stepper.errors import StepperError
from stepper.registry import Registry, unavailable_reason


def list_voices(settings: StepperSettings, registry: Registry) -> dict[str, Any]:
    """``{provider: {"voices": [...]} | {"unavailable": reason} | {"error": message}}``, in chain order."""
    listing: dict[str, Any] = {}
    for entry in settings.chains["speech"]:
        if entry.provider in listing:
            continue
        provider_settings = settings.providers[entry.provider]
        reason = unavailable_reason(registry, "speech", provider_settings)
        if reason is not None:
            listing[entry.provider] = {"unavailable": reason}
            continue
        provider = registry.load("speech", entry.provider)(provider_settings)
        lister = getattr(provider, "voices", None)
        if lister is None:
            listing[entry.provider] = {"unavailable": "this provider cannot list its voices"}
            continue
        try:
            listing[entry.provider] = {"voices": lister()}
        except StepperError as exc:
            listing[entry.provider] = {"error": f"{type(exc).__name__}: {exc}"}
    return listing
