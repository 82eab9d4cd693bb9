"""``stepper.steps``: the steps of a tutorial in ordered screenshots (``frames``, ``threshold?``)."""

from __future__ import annotations

from typing import Any

from stepper.celery import app
from stepper.tasks.base import FamilyTask, run_family


@app.task(name="stepper.steps", base=FamilyTask, bind=True)
def steps(self: FamilyTask, *args: Any, **kwargs: Any) -> dict[str, Any]:
    """The steps of a tutorial in ordered screenshots (``frames``, ``threshold?``)."""
    return run_family(self, "steps", args, kwargs)
