"""Celery's producers, without kombu's per-publish work for a queue already declared on the connection.

Celery publishes every task with ``declare=[queue]`` (``celery.app.amqp.AMQP.send_task_message``), and kombu's
``maybe_declare`` looks in the connection's cache of declared entities only after it has bound a copy of the
queue (with its exchange and bindings) to the channel and, as Celery publishes with retries, wrapped the
declaration in ``Connection.ensure`` (``kombu.common._imaybe_declare``): about 40 µs of a producer's CPU per
publish on a quiet process, to learn that nothing is to be done. :class:`Producer` answers from the same cache
first. Everything else, the first declaration on a connection and any after a reconnect (kombu clears the cache
when the connection closes), is kombu's.

stepper's app selects them through Celery's ``amqp_cls`` (stepper.celery.StepperCelery).
"""

from __future__ import annotations

from typing import Any

import kombu
from celery.app.amqp import AMQP as CeleryAMQP


class Producer(kombu.Producer):  # type: ignore[misc]  # kombu is untyped
    def maybe_declare(self, entity: Any, retry: bool = False, **retry_policy: Any) -> Any:
        """kombu's, returning False at once for an entity the connection declared already. kombu keys its cache
        by ``hash(entity)``, which names the queue or exchange (``Queue.__hash__``), bound or not."""
        connection = self.connection
        cached = entity and entity.can_cache_declaration and connection is not None
        if cached and hash(entity) in connection.declared_entities:
            return False
        return super().maybe_declare(entity, retry, **retry_policy)


class AMQP(CeleryAMQP):  # type: ignore[misc]  # Celery is untyped
    """Celery's messaging of an app, whose producer pool makes :class:`Producer`s."""

    Producer = Producer

    @property
    def producer_pool(self) -> Any:
        pool = super().producer_pool
        pool.Producer = Producer  # kombu's pool group makes kombu's own unless told
        return pool
