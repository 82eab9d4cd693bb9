"""``stepper.report``: a structured report about one commit (``commit``, ``repository?``, ``audience?``)."""

from __future__ import annotations

from typing import Any

from stepper.celery import app
from stepper.tasks.base import FamilyTask, run_family


@app.task(name="stepper.report", base=FamilyTask, bind=True)
def report(self: FamilyTask, *args: Any, **kwargs: Any) -> dict[str, Any]:
    """A structured report about one commit (``commit``, ``repository?``, ``audience?``)."""
    return run_family(self, "report", args, kwargs)
