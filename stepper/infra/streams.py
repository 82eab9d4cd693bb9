"""Streaming chat deltas to producers through a Redis Stream keyed by the task id.

The worker appends ``delta`` events as a provider produces text, and ``tool_call`` events as it produces tool
calls: their text is JSON ``{"index", "id", "name", "arguments", "extra_content"}``, a fragment in the terms of
OpenAI's stream chunks (the first fragment of call ``index`` names its ``id`` and ``name``; the ``arguments``
text of all its fragments, in order, makes the call's arguments; ``extra_content`` is what the vendor needs
back with the call, when it says). A provider that fails after its first token
makes the stream emit ``reset`` (discard what you have), and the answer restarts from the next provider. Every
stream ends with ``done``, ``error`` or ``cancelled``; the task's own result stays the complete answer or the
error. A reader never waits on a stream nobody writes: while the stream is silent it asks ``ended`` whether
the task already finished without writing (revoked before it ran, expired, lost) and ends the stream with it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Literal, Protocol, cast

from redis import Redis

from stepper.infra import keys
from stepper.infra.connections import as_text

EventType = Literal["delta", "tool_call", "reset", "done", "error", "cancelled"]
FINAL_EVENTS: frozenset[EventType] = frozenset({"done", "error", "cancelled"})
#: Events kept per stream (approximately; older deltas are trimmed) and how long a stream lives.
MAX_EVENTS = 10_000
TTL_S = 3600


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


class RedisStreamSink:
    def __init__(self, client: Redis, task_id: str) -> None:
        self._client = client
        self._key = keys.stream(task_id)
        self._pending_text = False

    def delta(self, text: str) -> None:
        self._add("delta", text)
        self._pending_text = True

    def tool_call(
        self,
        index: int,
        call_id: str | None,
        name: str | None,
        arguments: str,
        extra_content: dict[str, Any] | None = None,
    ) -> None:
        event = StreamEvent.tool_call(index, call_id, name, arguments, extra_content)
        self._add(event.type, event.text)
        self._pending_text = True

    def reset(self, reason: str) -> None:
        self._add("reset", reason)
        self._pending_text = False

    def done(self, message: Mapping[str, Any]) -> None:
        """End the stream with the answer ``message`` (a chat output's); an answer that was not streamed (a
        mock's, a cached one) is sent whole first, as by :func:`answer_events`."""
        if not self._pending_text:
            for event in answer_events(message) or [StreamEvent("delta", "")]:
                self._add(event.type, event.text)
        self._add("done", "")

    def error(self, message: str) -> None:
        self._add("error", message)

    def cancelled(self, reason: str) -> None:
        self._add("cancelled", reason)

    def _add(self, event: EventType, text: str) -> None:
        pipe = self._client.pipeline(transaction=False)
        pipe.xadd(self._key, {"type": event, "text": text}, maxlen=MAX_EVENTS, approximate=True)
        pipe.expire(self._key, TTL_S)
        pipe.execute()


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
