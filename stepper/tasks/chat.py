"""``stepper.chat``: one chat completion (``messages``, ``model?``, ``max_tokens?``, ``temperature?``)."""

from __future__ import annotations

from typing import Any

from stepper.celery import app
from stepper.tasks.base import FamilyTask, run_family


@app.task(name="stepper.chat", base=FamilyTask, bind=True)
def chat(self: FamilyTask, *args: Any, **kwargs: Any) -> dict[str, Any]:
    """One chat completion (``messages``, ``model?``, ``max_tokens?``, ``temperature?``)."""
    return run_family(self, "chat", args, kwargs)
