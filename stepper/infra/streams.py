"""Streaming chat deltas to producers through a Redis Stream keyed by the task id.

The worker appends ``delta`` events as a provider produces text, and ``tool_call`` events as it produces tool
calls: their text is JSON ``{"index", "id", "name", "arguments", "extra_content"}``, a fragment in the terms of
OpenAI's stream chunks (the first fragment of call ``index`` names its ``id`` and ``name``; the ``arguments``
text of all its fragments, in order, makes the call's arguments; ``extra_content`` is what the vendor needs
back with the call, when it says). A provider that fails after its first token
makes the stream emit ``reset`` (discard what you have), and the answer restarts from the next provider. Every
stream ends with ``done``, ``error`` or ``cancelled``; the task's own result stays the complete answer or the
error, and ``done``'s text is the rest of what ends the answer (:func:`answer_ending`: finish reason, logprobs,
usage), so that a relay can end it without reading the result. A reader never waits on a stream nobody writes:
while the stream is silent it asks ``ended`` whether the task already finished without writing (revoked before
it ran, expired, lost) and ends the stream with it.

An answer's fragments (deltas and tool-call fragments) are written in batches: a vendor streaming a token every
few milliseconds would otherwise cost a Redis round trip per token, for every stream in flight. The first
fragment of an answer (of a stream, and of the next provider's after a ``reset``) is written at once, since time
to first token is what a reader waits on; later ones are held until ``BATCH_WINDOW_S`` after the first one held,
or ``BATCH_MAX_CHARS`` of text, or the next event of another kind (``reset``, ``done``...), and written in one
round trip: consecutive deltas as one ``delta`` whose text is theirs joined, tool-call fragments as they came.
A reader joins deltas anyway, so it sees the same answer in fewer, larger pieces. One thread per process
(:class:`Flusher`) writes what a paused stream holds when its window ends.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Literal, Protocol, cast

from redis import Redis

from stepper.infra import keys, lua, threads
from stepper.infra.connections import as_text

EventType = Literal["delta", "tool_call", "reset", "done", "error", "cancelled"]
FINAL_EVENTS: frozenset[EventType] = frozenset({"done", "error", "cancelled"})
#: Events kept per stream (approximately; older deltas are trimmed) and how long a stream lives.
MAX_EVENTS = 10_000
TTL_S = 3600
#: The longest an answer's fragment is held before it is written with the ones after it, and the most text held.
BATCH_WINDOW_S = 0.02
BATCH_MAX_CHARS = 2048


class DeltaSink(Protocol):
    def delta(self, text: str) -> None: ...

    def tool_call(
        self,
        index: int,
        call_id: str | None,
        name: str | None,
        arguments: str,
        extra_content: dict[str, Any] | None = None,
    ) -> None: ...

    def reset(self, reason: str) -> None: ...


#: The sink of the task running in this thread or greenlet, if its request asked to stream.
current_sink: ContextVar[DeltaSink | None] = ContextVar("stepper_delta_sink", default=None)


@dataclass(frozen=True)
class StreamEvent:
    type: EventType
    text: str

    @classmethod
    def tool_call(
        cls,
        index: int,
        call_id: str | None,
        name: str | None,
        arguments: str,
        extra_content: dict[str, Any] | None = None,
    ) -> StreamEvent:
        fragment = {"index": index, "id": call_id, "name": name, "arguments": arguments}
        return cls("tool_call", json.dumps({**fragment, "extra_content": extra_content} if extra_content else fragment))


def answer_events(message: Mapping[str, Any]) -> list[StreamEvent]:
    """A whole answer (a chat output's ``message``) as the events that stream it: its text, then each tool
    call in one fragment."""
    events = [StreamEvent("delta", message["content"])] if message.get("content") else []
    for index, call in enumerate(message.get("tool_calls") or ()):
        function = call["function"]
        events.append(
            StreamEvent.tool_call(index, call["id"], function["name"], function["arguments"], call.get("extra_content"))
        )
    return events


def answer_ending(result: Mapping[str, Any]) -> dict[str, Any]:
    """What ends a chat task's answer besides its text, from its ``result``: ``{"finish_reason", "logprobs",
    "usage"}`` (the output's finish reason and logprobs, None when not asked for; the result's ``usage``,
    ``input_tokens``, ``output_tokens`` and ``cached_input_tokens`` counted in tokens, None when the provider
    said nothing). The text of the ``done`` event, as JSON."""
    output = result["output"]
    return {"finish_reason": output["finish_reason"], "logprobs": output.get("logprobs"), "usage": result.get("usage")}


def done_event(result: Mapping[str, Any]) -> StreamEvent:
    """The ``done`` event that ends the stream of a chat task that answered ``result``."""
    return StreamEvent("done", json.dumps(answer_ending(result)))


class RedisStreamSink:
    """A task's stream, written as described in the module: the answer's fragments batched, every other event at
    once (after the held fragments). Thread-safe: the process's :class:`Flusher` writes held fragments from its
    thread."""

    def __init__(self, client: Redis, task_id: str, batch_window_s: float = BATCH_WINDOW_S) -> None:
        self._client = client
        self._key = keys.stream(task_id)
        self._pending_text = False
        self._batch_window_s = batch_window_s
        self._lock = threading.Lock()
        #: Fragments held, in order: consecutive deltas gather in one entry's pieces.
        self._held: list[tuple[EventType, list[str]]] = []
        self._held_chars = 0
        self._held_since = 0.0
        self._written = False
        #: False until this answer's first fragment is written: a new provider's, after a reset, too.
        self._answer_started = False

    def delta(self, text: str) -> None:
        self._hold("delta", text)

    def tool_call(
        self,
        index: int,
        call_id: str | None,
        name: str | None,
        arguments: str,
        extra_content: dict[str, Any] | None = None,
    ) -> None:
        event = StreamEvent.tool_call(index, call_id, name, arguments, extra_content)
        self._hold(event.type, event.text)

    def reset(self, reason: str) -> None:
        self._add("reset", reason)
        self._pending_text = False
        self._answer_started = False

    def done(self, result: Mapping[str, Any]) -> None:
        """End the stream with a chat task's ``result`` (:func:`done_event`); an answer that was not streamed (a
        mock's, a cached one) is sent whole first, as by :func:`answer_events`."""
        if not self._pending_text:
            for event in answer_events(result["output"]["message"]) or [StreamEvent("delta", "")]:
                self._add(event.type, event.text)
        ending = done_event(result)
        self._add(ending.type, ending.text)

    def error(self, message: str) -> None:
        self._add("error", message)

    def cancelled(self, reason: str) -> None:
        self._add("cancelled", reason)

    def flush_if_due(self, now: float) -> bool:
        """Write the held fragments if their window has ended by ``now`` (monotonic seconds); True while some
        are still held."""
        with self._lock:
            if self._held and now - self._held_since >= self._batch_window_s:
                self._write([])
            return bool(self._held)

    def _hold(self, event: EventType, text: str) -> None:
        """Hold one fragment of the answer, or write it with those held when it is the answer's first or enough
        is held (see the module)."""
        with self._lock:
            self._pending_text = True
            first_held = not self._held
            if event == "delta" and self._held and self._held[-1][0] == "delta":
                self._held[-1][1].append(text)
            else:
                self._held.append((event, [text]))
            self._held_chars += len(text)
            if not self._answer_started or self._held_chars >= BATCH_MAX_CHARS or self._batch_window_s <= 0:
                self._write([])
                self._answer_started = True
            elif first_held:
                self._held_since = time.monotonic()
                flusher().watch(self)

    def _add(self, event: EventType, text: str) -> None:
        with self._lock:
            self._write([(event, text)])

    def _write(self, events: list[tuple[EventType, str]]) -> None:
        """The held fragments (consecutive deltas as one), then ``events``, in one round trip (called with the
        lock held)."""
        events = [*((held, "".join(pieces)) for held, pieces in self._held), *events]
        if not events:
            return
        # The time to live is set with the first write and renewed with the last.
        renew = not self._written or any(event in FINAL_EVENTS for event, _ in events)
        fields = [field for event in events for field in event]
        # Held fragments that a Redis error kept are written with the next event.
        lua.script(self._client, "stream_append")(keys=[self._key], args=[MAX_EVENTS, TTL_S if renew else 0, *fields])
        self._held.clear()
        self._held_chars = 0
        self._written = True


class Flusher:
    """Writes the fragments that streams hold once their window ends, for one process: one thread, started with
    the first stream that holds one (a forked pool process starts its own)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._sinks: set[RedisStreamSink] = set()
        self._thread: threading.Thread | None = None

    def watch(self, sink: RedisStreamSink) -> None:
        with self._lock:
            self._sinks.add(sink)
            self._thread = threads.running(self._thread, self._run, "stepper-stream-flusher")
            self._wake.notify()

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._sinks:
                    self._wake.wait()
                sinks = list(self._sinks)
            now = time.monotonic()
            done = {sink for sink in sinks if not _flushed_or_kept(sink, now)}
            with self._lock:
                self._sinks -= done
            time.sleep(BATCH_WINDOW_S / 2)


def _flushed_or_kept(sink: RedisStreamSink, now: float) -> bool:
    """Flush ``sink`` if due; True while it still holds fragments. A Redis error drops the sink from the watch:
    its task writes the held fragments with its next event, or fails writing them as it would have unbatched."""
    try:
        return sink.flush_if_due(now)
    except Exception:  # noqa: BLE001  (the flusher thread must outlive one stream's Redis error)
        return False


_flushers: dict[int, Flusher] = {}


def flusher() -> Flusher:
    """This process's flusher (a forked child gets its own: threads do not survive a fork)."""
    return _flushers.setdefault(os.getpid(), Flusher())


def read_stream(
    client: Redis,
    task_id: str,
    timeout_s: float = 300.0,
    block_ms: int = 1000,
    ended: Callable[[], list[StreamEvent]] | None = None,
) -> Iterator[StreamEvent]:
    """Yield a task's events from the start until ``done``, ``error`` or ``cancelled`` (yielded too).

    ``ended`` is asked after each ``block_ms`` of silence; it returns the events that end a task which finished
    without writing its stream (``[]`` while it has not finished). Raises ``TimeoutError`` after ``timeout_s``.
    """
    key = keys.stream(task_id)
    last_id = "0-0"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        answer: Any = client.xread({key: last_id}, count=100, block=block_ms)
        if not answer and ended is not None and (events := ended()):
            # The task is over; a last read catches events written between the silence and that answer.
            answer = client.xread({key: last_id}, count=100) or [(key, [])]
            if not answer[0][1]:
                yield from events
                return
        for _stream, entries in answer or ():
            for entry_id, fields in entries:
                last_id = entry_id
                event = StreamEvent(cast(EventType, as_text(fields[b"type"])), as_text(fields[b"text"]))
                yield event
                if event.type in FINAL_EVENTS:
                    return
    raise TimeoutError(f"no end of stream for task {task_id} within {timeout_s:g}s")
