"""``stepper.voices``: the voices of every speech provider the workers can use."""

from __future__ import annotations

from typing import Any

from stepper.celery import app
from stepper.config import current_settings
from stepper.registry import build_registry, list_voices


@app.task(name="stepper.voices")
def voices() -> dict[str, Any]:
    """Answered by a worker, so it lists what the workers (not the producer) have installed and configured."""
    settings = current_settings()
    return list_voices(settings, build_registry(settings))
