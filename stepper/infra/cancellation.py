"""Cancelling a running task, and deadlines on its vendor calls: scopes, and the one thread that enforces them.

A task runs inside a :class:`TaskScope`: its id, the caller's deadline (``deadline_s``) and a cancelled flag.
Each vendor call inside it runs in a :class:`CallScope` with its own deadlines: the first byte of the answer
(``first_token_timeout_s``) and the whole call (``total_timeout_s``, never past the task's deadline). A call
whose scope ends (cancelled, or a deadline passed) has its connection shut down from outside: the read
blocked on it returns at once, so a vendor stream stops within one enforcement tick, not at the next byte.

One daemon thread per process (:class:`Enforcer`) does both jobs: every ``TICK_S`` it ends the calls whose
deadlines passed, and every ``REVOKE_POLL_S`` it asks Redis which running tasks were revoked
(:mod:`stepper.infra.revokes`, which ``stepper.cancel`` and Celery's ``revoke`` write) and cancels them. It
runs only while a task is registered, and costs one ``ZMSCORE`` per poll for all of this process's tasks; the
first poll after it was idle comes ``REVOKE_POLL_S`` after the task that woke it started.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Literal

from redis import Redis
from redis.exceptions import RedisError

from stepper.infra import revokes, threads

log = logging.getLogger(__name__)

#: How often deadlines are checked, and how often Redis is asked for revokes (seconds).
TICK_S = 0.1
REVOKE_POLL_S = 0.5

EndReason = Literal["cancelled", "first_token", "total", "deadline"]


class CallScope:
    """One vendor call: when it must have sent its first byte and when it must be over (``time.monotonic``
    seconds), and how to cut its connection. The HTTP layer reports the first byte and reads ``ended``."""

    def __init__(
        self, task: TaskScope, first_byte_by: float | None, over_by: float | None, started: float | None = None
    ) -> None:
        self.task = task
        self.started = time.monotonic() if started is None else started
        #: Seconds from the start of the call to the first byte of the answer, once it arrived.
        self.first_byte_after_s: float | None = None
        self._first_byte_by = first_byte_by
        self._over_by = over_by
        self._closers: list[Callable[[], None]] = []
        self._lock = threading.Lock()
        #: Why the call was cut, or None while it runs on its own terms.
        self.ended: EndReason | None = None
        #: Whether the first byte of the answer arrived.
        self.answered = False

    def attach(self, closer: Callable[[], None]) -> None:
        """Register how to cut this call's connection; called by the connection as it sends the request."""
        with self._lock:
            self._closers.append(closer)
            ended = self.ended
        if ended is not None:
            closer()

    def first_byte(self) -> None:
        """The answer started: from now on only the total deadline applies."""
        self._first_byte_by = None
        if not self.answered:
            self.first_byte_after_s = time.monotonic() - self.started
        self.answered = True

    def due(self, now: float) -> EndReason | None:
        """Whether this call must end now, and why."""
        if self.task.cancelled:
            return "cancelled"
        if self._first_byte_by is not None and now >= self._first_byte_by:
            return "first_token"
        if self._over_by is not None and now >= self._over_by:
            task_deadline = self.task.deadline_at
            return "deadline" if task_deadline is not None and self._over_by >= task_deadline else "total"
        return None

    def end(self, reason: EndReason) -> None:
        """Cut the call: shut its connection down so that a blocked read returns now."""
        with self._lock:
            if self.ended is not None:
                return
            self.ended = reason
            closers = list(self._closers)
        for closer in closers:
            with contextlib.suppress(OSError):  # already closed: nothing left to cut
                closer()


class TaskScope:
    """One running task: its id (None outside Celery), its deadline (``time.monotonic`` seconds) and whether
    it has been cancelled."""

    def __init__(self, task_id: str | None = None, deadline_at: float | None = None) -> None:
        self.task_id = task_id
        self.deadline_at = deadline_at
        self.reason: str | None = None
        self._cancelled = threading.Event()
        self._calls: set[CallScope] = set()
        #: Time to the first byte of the last vendor call that ended in this task (seconds), if it got one.
        self.last_first_byte_s: float | None = None
        self._lock = threading.Lock()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def cancel(self, reason: str) -> None:
        """Cancel the task: every call it has open is cut now, and it starts no other."""
        self.reason = self.reason or reason
        self._cancelled.set()
        for call in self.calls():
            call.end("cancelled")

    def remaining_s(self) -> float | None:
        """Seconds left before the deadline (0 when spent), or None without one."""
        if self.deadline_at is None:
            return None
        return max(0.0, self.deadline_at - time.monotonic())

    def sleep(self, seconds: float) -> None:
        """Sleep, waking early if the task is cancelled."""
        self._cancelled.wait(seconds)

    def calls(self) -> list[CallScope]:
        with self._lock:
            return list(self._calls)

    @contextmanager
    def call(self, first_token_timeout_s: float | None, total_timeout_s: float | None) -> Iterator[CallScope]:
        """A vendor call inside this task, cut at the first of: cancellation, no first byte within
        ``first_token_timeout_s``, ``total_timeout_s`` in all, or the task's deadline."""
        now = time.monotonic()
        over_by = None if total_timeout_s is None else now + total_timeout_s
        if self.deadline_at is not None:
            over_by = self.deadline_at if over_by is None else min(over_by, self.deadline_at)
        scope = CallScope(self, None if first_token_timeout_s is None else now + first_token_timeout_s, over_by, now)
        with self._lock:
            self._calls.add(scope)
        token = current_call.set(scope)
        enforcer().watch_call(scope)
        try:
            yield scope
        finally:
            self.last_first_byte_s = scope.first_byte_after_s
            current_call.reset(token)
            enforcer().forget_call(scope)
            with self._lock:
                self._calls.discard(scope)


#: The task running in this thread or greenlet (the chain executor sets it); None outside a task.
current_task: ContextVar[TaskScope | None] = ContextVar("stepper_current_task", default=None)
#: The vendor call in progress in this thread or greenlet, which the HTTP connection attaches itself to.
current_call: ContextVar[CallScope | None] = ContextVar("stepper_current_call", default=None)


class Enforcer:
    """Ends calls whose deadlines passed and cancels revoked tasks, for one process (see the module)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: set[CallScope] = set()
        self._tasks: dict[str, TaskScope] = {}
        self._client: Redis | None = None
        self._wake = threading.Condition(self._lock)
        self._thread: threading.Thread | None = None

    def watch_task(self, scope: TaskScope, client: Redis) -> None:
        """Cancel ``scope`` when its task id is revoked (asked of ``client`` every ``REVOKE_POLL_S``)."""
        if scope.task_id is None:
            return
        with self._lock:
            self._tasks[scope.task_id] = scope
            self._client = client
            self._start()

    def forget_task(self, scope: TaskScope) -> None:
        with self._lock:
            if scope.task_id is not None:
                self._tasks.pop(scope.task_id, None)

    def watch_call(self, call: CallScope) -> None:
        with self._lock:
            self._calls.add(call)
            self._start()

    def forget_call(self, call: CallScope) -> None:
        with self._lock:
            self._calls.discard(call)

    def _start(self) -> None:
        """Start the thread if it is not running (called with the lock held); wake it if it waits."""
        self._thread = threads.running(self._thread, self._run, "stepper-enforcer")
        self._wake.notify()

    def _run(self) -> None:
        # The thread starts, and leaves its wait, when a task starts. That task was checked against the revokes
        # when its worker received it (Celery's revoked set, which stepper's housekeeping loads from Redis every
        # second, and the broadcast revokes): its first poll comes an interval later, not while its first vendor
        # call is being made.
        next_poll = time.monotonic() + REVOKE_POLL_S
        while True:
            with self._lock:
                if not self._calls and not self._tasks:
                    while not self._calls and not self._tasks:
                        self._wake.wait()
                    next_poll = time.monotonic() + REVOKE_POLL_S
                calls = list(self._calls)
                tasks = dict(self._tasks)
                client = self._client
            now = time.monotonic()
            for call in calls:
                reason = call.due(now)
                if reason is not None:
                    call.end(reason)
            if tasks and client is not None and now >= next_poll:
                next_poll = now + REVOKE_POLL_S
                self._cancel_revoked(client, tasks)
            time.sleep(TICK_S)

    @staticmethod
    def _cancel_revoked(client: Redis, tasks: dict[str, TaskScope]) -> None:
        try:
            revoked = revokes.revoked_among(client, list(tasks))
        except RedisError as exc:  # a revoke is noticed at the next poll that reaches Redis
            log.debug("could not read revokes (%s)", exc)
            return
        for task_id in revoked:
            scope = tasks[task_id]
            if not scope.cancelled:
                log.info("task %s was revoked while it ran: cancelling it", task_id)
                scope.cancel("revoked")


_enforcers: dict[int, Enforcer] = {}


def enforcer() -> Enforcer:
    """This process's enforcer (a forked child makes its own: threads do not survive a fork)."""
    pid = os.getpid()
    if pid not in _enforcers:
        _enforcers[pid] = Enforcer()
    return _enforcers[pid]


@contextmanager
def task_scope(task_id: str, deadline_at: float | None, client: Redis) -> Iterator[TaskScope]:
    """Run a task inside a scope that revokes (read from ``client``) cancel."""
    scope = TaskScope(task_id, deadline_at)
    enforcer().watch_task(scope, client)
    try:
        yield scope
    finally:
        enforcer().forget_task(scope)
