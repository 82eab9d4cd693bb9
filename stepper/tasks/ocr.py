"""``stepper.ocr``: text, confidence and word boxes of each image (``images``, ``lang``, ``psm?``)."""

from __future__ import annotations

from typing import Any

from stepper.celery import app
from stepper.tasks.base import FamilyTask, run_family


@app.task(name="stepper.ocr", base=FamilyTask, bind=True)
def ocr(self: FamilyTask, *args: Any, **kwargs: Any) -> dict[str, Any]:
    """Text, confidence and word boxes of each image (``images``, ``lang``, ``psm?``)."""
    return run_family(self, "ocr", args, kwargs)
