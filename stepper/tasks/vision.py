"""``stepper.vision``: faces, people, codes, colours and quality of one image (``image``, ``features``)."""

from __future__ import annotations

from typing import Any

from stepper.celery import app
from stepper.tasks.base import FamilyTask, run_family


@app.task(name="stepper.vision", base=FamilyTask, bind=True)
def vision(self: FamilyTask, *args: Any, **kwargs: Any) -> dict[str, Any]:
    """Faces, people, codes, colours and quality of one image (``image``, ``features``)."""
    return run_family(self, "vision", args, kwargs)
