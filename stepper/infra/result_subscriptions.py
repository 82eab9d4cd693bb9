"""A task's result channel, subscribed when its result is first waited for rather than as the task is sent.

Celery's Redis result backend learns of a finished task from the ``PUBLISH`` that stores its result, on a
channel per task. Its ``on_task_call`` subscribes to that channel as the task is sent, before the message is
pushed (``Celery.send_task``). Every submit then costs a ``SUBSCRIBE`` (and, when its ``AsyncResult`` is dropped,
an ``UNSUBSCRIBE``), on the way to the push: about 0.2 ms in the gateway, before a streamed chat's message even
leaves, and a subscription for every task a producer sends and never waits on (``stepper batch``, webhooks).

:class:`SubscribeOnWait` subscribes when a result is first waited for instead: ``AsyncResult.get``, ``then``,
and a group's ``join_native`` all register the result with the backend (``add_pending_result``), which is
where Celery also subscribes for results it never sent (a chord's callback). A task may have finished before
that, its ``PUBLISH`` heard by nobody, so the first registration reads the stored result once after
subscribing: a ready result is delivered from it (``get`` would read it too; ``then`` would otherwise wait for
a message that already went).
"""

from __future__ import annotations

from typing import Any


class SubscribeOnWait:
    """Mixed into Celery's Redis result backends (stepper.infra.result_backend): see the module."""

    def on_task_call(self, producer: Any, task_id: str) -> None:
        """Nothing as the task is sent (Celery's Redis backend subscribes here): :meth:`add_pending_result`
        subscribes when the result is first waited for."""

    def add_pending_result(self, result: Any, weak: bool = False, start_drainer: bool = True) -> Any:
        """Celery's, which subscribes to the task's channel; when that subscription is new, the stored result
        is read once, so that a task which finished before it is delivered (``result.ready()`` sets the result
        and calls its ``then`` callbacks)."""
        backend: Any = self
        key = backend.get_key_for_task(result.id)
        new = key not in backend.result_consumer.subscribed_to
        added = super().add_pending_result(result, weak=weak, start_drainer=start_drainer)  # type: ignore[misc]
        if new:
            result.ready()
        return added
