"""Relaying many task streams to asyncio readers with one Redis connection: the gateway's side of streaming.

A reader that blocks on ``XREAD`` for its own stream holds a thread and a Redis connection for as long as the
answer takes, so a gateway relaying a thousand streamed chats would need a thousand of each (and Starlette's
thread pool has forty). :class:`StreamHub` instead runs one thread that reads every stream its readers follow
with one blocking ``XREAD`` over all their keys, and hands each entry to its reader's asyncio queue. A read under
way does not include the readers that came after it began: the first of them wakes it by appending to the hub's
own wake stream, which every read includes, so that their first events are not held back; the others count on
that wake, and the next read includes them all. A reader that comes while no read is under way (none followed,
or between two reads) wakes nothing: the next read includes it. A reader's events are those of
:func:`stepper.infra.streams.read_stream`, and end the same ways.

Redis: ``XREAD BLOCK`` takes any number of keys (https://redis.io/docs/latest/commands/xread/); each call
returns what any of them holds, at most ``COUNT`` entries per key.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, cast

from redis import Redis
from redis.exceptions import RedisError

from stepper.infra import keys, threads
from stepper.infra.connections import as_text
from stepper.infra.streams import FINAL_EVENTS, EventType, StreamEvent

log = logging.getLogger(__name__)

#: Entries read per stream per read, and how long one read blocks when nothing comes (milliseconds).
COUNT = 100
BLOCK_MS = 1000
#: The longest silence between two questions to ``ended``, in ``BLOCK_MS``.
MAX_SILENCE_CHECKS = 4
#: The longest the hub waits between two reads that found entries (it waits what the last read cost it in CPU).
MAX_PAUSE_S = 0.005
#: Seconds the hub waits before reading again after a Redis error (its readers get the error meanwhile).
ERROR_PAUSE_S = 0.5
#: The wake stream keeps one entry and lives an hour past its last wake.
WAKE_TTL_S = 3600


@dataclass
class _Reader:
    """One stream followed for one asyncio reader: where it has read up to, and its queue of event batches (or
    the Redis error that stopped the hub's read)."""

    loop: asyncio.AbstractEventLoop
    #: The last entry id the hub read for this reader (what it delivered goes up to it).
    last_id: bytes | str = "0-0"
    #: Whether any event went out to the reader's caller.
    yielded: bool = False
    queue: asyncio.Queue[list[StreamEvent] | RedisError] = field(default_factory=asyncio.Queue)

    def deliver(self, item: list[StreamEvent] | RedisError) -> None:
        with contextlib.suppress(RuntimeError):  # its event loop closed: the reader is gone
            self.loop.call_soon_threadsafe(self.queue.put_nowait, item)


class StreamHub:
    """Follows task streams for asyncio readers of one process, over one connection of ``client``."""

    def __init__(self, client: Redis, block_ms: int = BLOCK_MS) -> None:
        self._client = client
        self._block_ms = block_ms
        self._wake_key = f"{keys.namespace()}:stream-hub:{uuid.uuid4().hex}"
        self._wake_seen: bytes | str = "0-0"
        self._lock = threading.Lock()
        self._followed = threading.Condition(self._lock)
        self._readers: dict[bytes, _Reader] = {}
        self._thread: threading.Thread | None = None
        self._closed = False
        #: Whether a read is under way (its keys fixed), and whether a wake was sent since it began.
        self._reading = False
        self._woken = False

    async def events(
        self, task_id: str, timeout_s: float, ended: Callable[[], Awaitable[list[StreamEvent]]]
    ) -> AsyncIterator[StreamEvent]:
        """Yield a task's events from the start until ``done``, ``error`` or ``cancelled`` (yielded too).

        ``ended`` is awaited after ``BLOCK_MS`` of silence, then after twice as long while the silence lasts
        (up to ``MAX_SILENCE_CHECKS`` times ``BLOCK_MS``: a thousand streams waiting for their first token
        must not ask a thousand times a second); it returns the events that end a task which finished without
        writing its stream (``[]`` while it has not). Raises ``TimeoutError`` after
        ``timeout_s``, and the ``RedisError`` that stopped the hub's read.
        """
        key = keys.stream(task_id).encode()
        reader = _Reader(asyncio.get_running_loop())
        try:
            if self._follow(key, reader):
                await asyncio.to_thread(self._wake)
            deadline = time.monotonic() + timeout_s
            silence_s = self._block_ms / 1000
            while time.monotonic() < deadline:
                try:
                    # Not asyncio.wait_for: before Python 3.12 it runs the get as a task of its own, a turn of the
                    # event loop more for every batch of events.
                    async with asyncio.timeout(min(silence_s, deadline - time.monotonic())):
                        item = await reader.queue.get()
                except TimeoutError:
                    if events := await ended():
                        for event in await self._last_events(key, reader, events):
                            yield event
                        return
                    silence_s = min(silence_s * 2, MAX_SILENCE_CHECKS * self._block_ms / 1000)
                    continue
                silence_s = self._block_ms / 1000
                for event in _events_of(item):
                    reader.yielded = True
                    yield event
                    if event.type in FINAL_EVENTS:
                        return
            raise TimeoutError(f"no end of stream for task {task_id} within {timeout_s:g}s")
        finally:
            self._unfollow(key)

    async def _last_events(self, key: bytes, reader: _Reader, ending: list[StreamEvent]) -> list[StreamEvent]:
        """The events left to yield once ``ended`` said the task is over with ``ending``: what reached the queue
        meanwhile and what the stream holds beyond it, else ``ending`` (only its final event when part of the
        stream was yielded already, so that no text comes twice)."""
        self._unfollow(key)
        await asyncio.sleep(0)  # deliveries scheduled before the unfollow reach the queue
        left: list[StreamEvent] = []
        while not reader.queue.empty():
            left.extend(_events_of(reader.queue.get_nowait()))
        left.extend(await asyncio.to_thread(self._read_after, key, reader))
        if not left:
            left = [event for event in ending if event.type in FINAL_EVENTS] if reader.yielded else ending
        final = next((index for index, event in enumerate(left) if event.type in FINAL_EVENTS), len(left) - 1)
        return left[: final + 1]

    def close(self) -> None:
        """Stop the hub's thread (its read under way returns at once) and give back its connection."""
        with self._lock:
            self._closed = True
            self._followed.notify()
            thread = self._thread
        if thread is not None and thread.is_alive():
            with contextlib.suppress(RedisError):  # else the read fails or times out by itself
                self._wake()
            thread.join(timeout=self._block_ms / 1000 + 1)

    def _follow(self, key: bytes, reader: _Reader) -> bool:
        """Follow ``key`` for ``reader``; True when the caller must wake the read under way (it is the first to
        come since that read began). A wake sent then makes the read return, and the next read includes every
        reader followed before it: ``XREAD`` returns the wake entry, newer than the id the read gave for the wake
        stream, even when the entry was written before the read reached Redis."""
        with self._lock:
            self._readers[key] = reader
            self._thread = threads.running(self._thread, self._run, "stepper-stream-hub")
            self._followed.notify()
            wake = self._reading and not self._woken
            self._woken = self._woken or wake
            return wake

    def _unfollow(self, key: bytes) -> None:
        with self._lock:
            self._readers.pop(key, None)

    def _wake(self) -> None:
        """Make the read under way return now, so that the next one includes the newest reader."""
        pipe = self._client.pipeline(transaction=False)
        pipe.xadd(self._wake_key, {"wake": "1"}, maxlen=1, approximate=False)
        pipe.expire(self._wake_key, WAKE_TTL_S)
        pipe.execute()

    def _read_after(self, key: bytes, reader: _Reader) -> list[StreamEvent]:
        """What the stream holds after what ``reader`` got, read at once."""
        answer: Any = self._client.xread({key: reader.last_id}, count=COUNT)
        return [_event(fields) for _stream, entries in answer or () for _entry_id, fields in entries]

    def _run(self) -> None:
        connection: Redis | None = None  # one pooled connection, kept for the blocking reads
        try:
            while (streams := self._next_read()) is not None:
                try:
                    if connection is None:
                        connection = self._client.client()  # type: ignore[no-untyped-call]
                    started_cpu_s = time.thread_time()
                    # The command itself, not redis-py's ``xread``, which took 1.3 to 1.5 ms of CPU against 0.95 ms
                    # for one read of a thousand streams (its checks and copies of the keys, and its telemetry).
                    answer: Any = connection.execute_command("XREAD", "COUNT", COUNT, "BLOCK", self._block_ms, *streams)
                except RedisError as exc:
                    self._failed(exc)
                    continue
                self._dispatch(answer or [])
                # A read's cost grows with the streams followed: spacing reads by what the last one cost keeps the
                # hub under half a core and lets each read bring more (a few streams: microseconds).
                time.sleep(min(MAX_PAUSE_S, time.thread_time() - started_cpu_s))
        finally:
            if connection is not None:
                connection.close()

    def _next_read(self) -> list[bytes | str] | None:
        """The ``STREAMS`` part of the next ``XREAD``: the wake stream's key and every followed stream's, then the
        entry id each got to; None once closed. Waits while no stream is followed."""
        with self._lock:
            while not self._readers and not self._closed:
                self._followed.wait()
            if self._closed:
                return None
            self._reading, self._woken = True, False
            return [
                "STREAMS",
                self._wake_key,
                *self._readers,
                self._wake_seen,
                *[reader.last_id for reader in self._readers.values()],
            ]

    def _failed(self, exc: RedisError) -> None:
        with self._lock:
            self._reading = False
            log.warning("reading %d stream(s) failed (%s); trying again", len(self._readers), exc)
            for reader in self._readers.values():
                reader.deliver(exc)
        time.sleep(ERROR_PAUSE_S)

    def _dispatch(self, answer: list[tuple[bytes, list[tuple[bytes, dict[bytes, bytes]]]]]) -> None:
        with self._lock:
            self._reading = False
            for key, entries in answer:
                if not entries:
                    continue
                if as_text(key) == self._wake_key:
                    self._wake_seen = entries[-1][0]
                elif (reader := self._readers.get(key)) is not None:
                    reader.last_id = entries[-1][0]
                    reader.deliver([_event(fields) for _entry_id, fields in entries])


def _events_of(item: list[StreamEvent] | RedisError) -> list[StreamEvent]:
    """A delivered batch of events; raises the Redis error delivered instead."""
    if isinstance(item, RedisError):
        raise item
    return item


def _event(fields: dict[bytes, bytes]) -> StreamEvent:
    return StreamEvent(cast(EventType, as_text(fields[b"type"])), as_text(fields[b"text"]))
