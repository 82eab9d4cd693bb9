"""``stepper.speech``: text to speech as an audio artifact reference (``text``, ``voice?``, ``format``)."""

from __future__ import annotations

from typing import Any

from stepper.celery import app
from stepper.tasks.base import FamilyTask, run_family


@app.task(name="stepper.speech", base=FamilyTask, bind=True)
def speech(self: FamilyTask, *args: Any, **kwargs: Any) -> dict[str, Any]:
    """Text to speech as an audio artifact reference (``text``, ``voice?``, ``format``)."""
    return run_family(self, "speech", args, kwargs)
