"""The text of each task's result in its task-succeeded event, made only when something reads it.

Celery's tracer formats a prefix of every result (``Task.resultrepr_maxsize`` characters) with its own
``celery.utils.saferepr`` as soon as the task returns (``celery.app.trace``), for two readers that are off most
of the time: the task-succeeded event, sent only while the worker's events are on (``worker_send_task_events``,
``celery control enable_events``, Flower), and the "succeeded in" INFO line, which stepper turns off above DEBUG
(:func:`stepper.infra.logs.one_line_per_task`). saferepr streams every token through generators: 33 µs for a
chat result in a quiet loop; a busy threads worker of the overhead benchmark spent 1.58 ms of CPU per mock chat
without this module and 1.48 ms with it (8 alternated rounds).

:func:`defer_result_repr` makes the tracer hold a :class:`DeferredRepr` instead (:func:`deferred_saferepr`,
which has saferepr's signature, takes its place). It calls the same saferepr,
with the same arguments, the first time it is read: as text (the log line), as JSON (kombu's encoder calls
``__json__``: the event) or pickled (a prefork child hands it to its parent as the text). Every reader sees the
text it saw before.
"""

from __future__ import annotations

from typing import Any

from celery.app import trace
from celery.utils.saferepr import saferepr


class DeferredRepr:
    """``saferepr(value, maxlen, maxlevels)``, made on first read and kept: ``str()``, ``__json__()`` (kombu's
    ``JSONEncoder``) and pickling give the text; ``repr()`` gives the text's repr, as for the string. Once made,
    the text replaces the value, so an event held back (Celery's event dispatcher keeps them while the broker is
    away) keeps only the text, as before; the one attribute swapped at once lets two threads read it safely."""

    __slots__ = ("_state",)

    def __init__(self, value: Any, maxlen: int | None = None, maxlevels: int = 3) -> None:
        self._state: tuple[Any, int | None, int] | str = (value, maxlen, maxlevels)

    def __str__(self) -> str:
        state = self._state
        if isinstance(state, str):
            return state
        text: str = saferepr(*state)
        self._state = text
        return text

    def __repr__(self) -> str:
        return repr(str(self))

    def __json__(self) -> str:
        return str(self)

    def __reduce__(self) -> tuple[type[str], tuple[str]]:
        return str, (str(self),)


def deferred_saferepr(value: Any, maxlen: int | None = None, maxlevels: int = 3, seen: Any = None) -> Any:
    """In place of ``celery.utils.saferepr.saferepr``, with its signature: a :class:`DeferredRepr` of the
    arguments the tracer passes, or saferepr's text at once when a caller passes ``seen``."""
    if seen is not None:
        return saferepr(value, maxlen, maxlevels, seen)
    return DeferredRepr(value, maxlen, maxlevels)


def defer_result_repr(conf: Any) -> None:
    """Make this process's Celery tracer defer the text of each result (``celery.app.trace.saferepr``), when
    ``conf`` (the worker's ``app.conf``) sends events as JSON: kombu's encoder is the reader that asks a value for
    its text (``__json__``). Under another ``event_serializer`` the tracer keeps Celery's own."""
    if conf.event_serializer == "json":
        trace.saferepr = deferred_saferepr
