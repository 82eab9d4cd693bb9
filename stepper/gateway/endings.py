"""Whether the tasks of silent streams ended without writing them, asked for many streams at once.

A relayed stream that stays silent asks whether its task ended without writing its stream
(:meth:`stepper.infra.stream_hub.StreamHub.events`: after a second of silence, then after twice as long): a task
revoked before a worker ran it, or ended by a worker of an earlier version. A thousand streams waiting for their
first tokens ask a few thousand times within seconds. One by one that was a thread hop and two Redis round trips
each, in the thread pool that also submits the gateway's requests. :class:`EndingChecks` gathers the questions that
come within ``WINDOW_S`` and answers them all with one thread hop, one ``MGET`` of their results and one
``ZMSCORE`` of the revokes.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from redis.exceptions import RedisError
from starlette.concurrency import run_in_threadpool

from stepper.infra import revokes
from stepper.infra.streams import StreamEvent
from stepper.producer import ending_events

log = logging.getLogger(__name__)

#: How long a question waits for others to join it, seconds: a silence check comes a second or more after the
#: stream's last event, so this changes nothing a client sees.
WINDOW_S = 0.05


class EndingChecks:
    """Gathers "did this task end without writing its stream?" for the tasks of one Celery app, on one event loop
    at a time."""

    def __init__(self, celery: Any, window_s: float = WINDOW_S) -> None:
        self._celery = celery
        self._window_s = window_s
        self._loop: asyncio.AbstractEventLoop | None = None
        self._asked: dict[str, list[asyncio.Future[list[StreamEvent]]]] = {}
        self._answering: asyncio.Task[None] | None = None

    async def ended(self, task_id: str) -> list[StreamEvent]:
        """The events that end ``task_id``'s stream when its task finished without writing it (its answer and
        ``done``, ``error``, or ``cancelled``, also for a task revoked before any worker ran it); ``[]`` while it
        has not. Answered within about ``WINDOW_S`` plus two Redis round trips; raises the ``RedisError`` of a
        Redis that could not be read."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # a loop of its own (tests): nothing asked on the last one can be answered
            self._loop, self._asked, self._answering = loop, {}, None
        answer: asyncio.Future[list[StreamEvent]] = loop.create_future()
        self._asked.setdefault(task_id, []).append(answer)
        if self._answering is None or self._answering.done():
            self._answering = loop.create_task(self._answer())
        return await answer

    async def _answer(self) -> None:
        await asyncio.sleep(self._window_s)
        while self._asked:
            asked, self._asked = self._asked, {}
            try:
                endings = await run_in_threadpool(self.endings, list(asked))
            except RedisError as exc:  # every waiter gets what its own question would have raised
                _fail(asked, exc)
                continue
            except Exception as exc:
                log.exception("asking whether %d silent stream(s) ended failed", len(asked))
                _fail(asked, exc)
                continue
            for task_id, answers in asked.items():
                for answer in answers:
                    if not answer.done():  # its stream may have ended meanwhile, its waiter gone
                        answer.set_result(endings.get(task_id, []))

    def endings(self, task_ids: list[str]) -> dict[str, list[StreamEvent]]:
        """The ending events of those of ``task_ids`` whose tasks finished (by id; the others are absent). Blocking:
        one ``MGET`` of their stored results, then one ``ZMSCORE`` of the revokes for the rest."""
        backend = self._celery.backend
        stored = backend.mget([backend.get_key_for_task(task_id) for task_id in task_ids])
        ended: dict[str, list[StreamEvent]] = {}
        for task_id, payload in zip(task_ids, stored, strict=True):
            if payload is not None:
                meta = backend.decode_result(payload)
                if events := ending_events(meta["status"], meta["result"]):
                    ended[task_id] = events
        running = [task_id for task_id in task_ids if task_id not in ended]
        for task_id in revokes.revoked_among(self._celery.state_client(), running):
            ended[task_id] = [StreamEvent("cancelled", "revoked")]
        return ended


def _fail(asked: dict[str, list[asyncio.Future[list[StreamEvent]]]], exc: Exception) -> None:
    for answers in asked.values():
        for answer in answers:
            if not answer.done():
                answer.set_exception(exc)
