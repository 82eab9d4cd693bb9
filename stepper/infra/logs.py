"""Worker logs: secrets redacted from every line, one JSON object per line when asked, one line per task.

``STEPPER_LOG_FORMAT=json`` makes each line a JSON object with the time, level, logger, message and, inside
a task, its id and name, the kind, the provider being called and the producer's correlation id (the
``stepper_correlation_id`` message header, ``stepper.submit(..., correlation_id=...)``; the task id
otherwise). Whatever the format, the values of every configured key and secret, and bearer tokens, are
replaced by ``[redacted]`` before a line is written: a vendor echoing a key in an error cannot leak it.

Each task ends with one INFO line (:func:`log_task_end`) that names who answered and never the answer. Above
DEBUG it replaces Celery's two lines per task, "received" and "succeeded in" with the start of the result
(:func:`one_line_per_task`): an answer or an OCR'd text is user content and stays out of the logs, and a busy
worker writes half the lines (py-spy of a no-op chat worker: Celery's two lines took about 110 µs a task, this
one about 75 µs).
"""

from __future__ import annotations

import json
import logging
import os
import time
from contextvars import ContextVar
from typing import Any

from celery.exceptions import Ignore, Reject, Retry

from stepper.infra.redaction import Redactor, configured_secrets

#: The message header a producer sets to follow its own request through the workers' logs.
CORRELATION_HEADER = "stepper_correlation_id"
#: Extra fields of the current task's log lines (kind, provider, correlation_id).
log_context: ContextVar[dict[str, str]] = ContextVar("stepper_log_context", default={})  # noqa: B039
#: Celery's loggers of its per-task INFO lines: "received" (celery.worker.strategy); "succeeded in", "retry"
#: and "raised expected" (celery.app.trace). Their warnings and errors (a rejection, an unexpected exception
#: with its traceback) are kept.
CELERY_TASK_LOGGERS = ("celery.worker.strategy", "celery.app.trace")
#: How a task's line says its Celery state (``task_postrun``'s ``state``).
ENDINGS = {
    "SUCCESS": "succeeded",
    "FAILURE": "failed",
    "RETRY": "goes back to the broker",
    "IGNORED": "ended",
    "REJECTED": "was rejected",
}

task_logger = logging.getLogger("stepper.tasks")


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


def one_line_per_task(loglevel: int | str) -> None:
    """Above DEBUG (Celery's ``--loglevel``, a level number or name), stop Celery's per-task INFO lines: the
    worker's own line (:func:`log_task_end`) replaces them. Called before Celery builds its tracers and
    strategies, which read the level once (celery.app.trace, celery.worker.strategy)."""
    level = loglevel if isinstance(loglevel, int) else logging.getLevelName(str(loglevel).upper())
    if isinstance(level, int) and level > logging.DEBUG:
        for name in CELERY_TASK_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)


def log_task_end(name: str, task_id: str, state: str, seconds: float, retval: Any) -> None:
    """The task's one INFO line once it ran, from Celery's ``task_postrun`` (``state``, ``retval``) and its run
    time in seconds: ``Task stepper.chat[<id>] succeeded after 0.012s: mock mock-1, 1 attempt``.

    A stepper result names its provider and model, and the attempts made (those skipped, a provider not
    configured here, are not counted) or that it came from the cache, never the answer. An exception is named
    with its message; Celery's ``Retry`` says when the task runs again and why; ``Ignore`` and ``Reject`` show
    the exception they were raised from (a cancellation, Redis unreachable).
    """
    if task_logger.isEnabledFor(logging.INFO):
        ending = ENDINGS.get(state, state.lower())
        task_logger.info("Task %s[%s] %s after %.3fs%s", name, task_id, ending, seconds, _detail(retval))


def _detail(retval: Any) -> str:
    if isinstance(retval, BaseException):
        if isinstance(retval, Retry):
            why = f" after {type(retval.exc).__name__}: {retval.exc}" if retval.exc is not None else ""
            return f": runs again {retval.humanize()}{why}"
        shown = retval.__cause__ if isinstance(retval, Ignore | Reject) and retval.__cause__ else retval
        return f": {type(shown).__name__}: {shown}"
    if not isinstance(retval, dict) or not {"provider", "model"} <= retval.keys():
        return ""
    answered = f": {retval['provider']} {retval['model']}"
    if retval.get("cached"):
        return f"{answered}, from the cache"
    # A provider not configured here (hybrid mode without its key) is an attempt "skipped": nothing was tried.
    attempts = sum(1 for attempt in retval.get("attempts") or () if attempt.get("outcome") != "skipped")
    return f"{answered}, {attempts} attempt{'' if attempts == 1 else 's'}"


def _current_task() -> Any:
    from celery import current_task

    return current_task if current_task and getattr(current_task, "request", None) else None
