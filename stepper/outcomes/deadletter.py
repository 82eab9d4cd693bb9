"""Every final failure goes to the dead-letter store (:mod:`stepper.ops.deadletters`), its secrets redacted;
a cancelled task does not: its caller asked for the end."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel

from stepper.errors import Cancelled, ChainExhausted, DeadlineExceeded
from stepper.infra.redaction import Redactor, configured_secrets
from stepper.ops.deadletters import open_store
from stepper.outcomes.base import OutcomeListener, RequestLike

log = logging.getLogger(__name__)


class DeadLetterListener(OutcomeListener):
    def failed(self, task_id: str, kind: str, request: RequestLike, error: BaseException, retries: int) -> None:
        if isinstance(error, Cancelled):
            return
        attempts = error.attempts if isinstance(error, ChainExhausted | DeadlineExceeded) else []
        dead_letter(task_id, kind, request, error, attempts, retries)


def dead_letter(  # noqa: PLR0917  (the worker's call, the same fields as DeadLetterStore.add)
    task_id: str,
    kind: str,
    request: Mapping[str, Any] | BaseModel,
    error: BaseException,
    attempts: Sequence[Mapping[str, Any] | BaseModel],
    retries: int,
) -> None:
    """Record a task whose failure is final. Never raises: a failure here is logged, and the task's own error
    is what its caller sees. Known secrets and bearer tokens are removed from the error texts too."""
    try:
        redactor = Redactor(configured_secrets())
        payload = request.model_dump(mode="json", exclude_unset=True) if isinstance(request, BaseModel) else request
        tried = [
            _redact_error_text(redactor, a.model_dump(mode="json") if isinstance(a, BaseModel) else dict(a))
            for a in attempts
        ]
        open_store().add(task_id, kind, payload, type(error).__name__, redactor.redact(str(error)), tried, retries)
    except Exception as exc:  # noqa: BLE001  (the dead-letter store must never mask the task's own failure)
        log.error("could not dead-letter task %s (%s): %s: %s", task_id, kind, type(exc).__name__, exc)


def _redact_error_text(redactor: Redactor, attempt: dict[str, Any]) -> dict[str, Any]:
    if isinstance(attempt.get("error"), str):
        attempt["error"] = redactor.redact(attempt["error"])
    return attempt
