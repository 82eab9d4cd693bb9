"""Worker logs: secrets redacted from every line, and one JSON object per line when asked.

``STEPPER_LOG_FORMAT=json`` makes each line a JSON object with the time, level, logger, message and, inside
a task, its id and name, the kind, the provider being called and the producer's correlation id (the
``stepper_correlation_id`` message header, ``stepper.submit(..., correlation_id=...)``; the task id
otherwise). Whatever the format, the values of every configured key and secret, and bearer tokens, are
replaced by ``[redacted]`` before a line is written: a vendor echoing a key in an error cannot leak it.
"""

from __future__ import annotations

import json
import logging
import os
import time
from contextvars import ContextVar
from typing import Any

from stepper.infra.redaction import Redactor, configured_secrets

#: The message header a producer sets to follow its own request through the workers' logs.
CORRELATION_HEADER = "stepper_correlation_id"
#: Extra fields of the current task's log lines (kind, provider, correlation_id).
log_context: ContextVar[dict[str, str]] = ContextVar("stepper_log_context", default={})  # noqa: B039


class RedactingFilter(logging.Filter):
    """Redacts a record's message and traceback before any handler writes it."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redact = redactor.redact

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = self.redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = self.redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        task = _current_task()
        if task is not None and task.request.id:
            line["task_id"] = task.request.id
            line["task"] = task.name
        line.update(log_context.get())
        if record.exc_text or record.exc_info:
            line["exception"] = record.exc_text or self.formatException(record.exc_info)  # type: ignore[arg-type]
        return json.dumps(line, default=str)


def install(logger: logging.Logger) -> None:
    """Redact (always) and format as JSON (when STEPPER_LOG_FORMAT=json) every handler of ``logger``."""
    redactor = RedactingFilter(Redactor(configured_secrets()))
    as_json = os.environ.get("STEPPER_LOG_FORMAT", "").lower() == "json"
    for handler in logger.handlers:
        handler.addFilter(redactor)
        if as_json:
            handler.setFormatter(JsonFormatter())


def _current_task() -> Any:
    from celery import current_task

    return current_task if current_task and getattr(current_task, "request", None) else None
