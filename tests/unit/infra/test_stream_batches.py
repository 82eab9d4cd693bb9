"""Deltas written in batches on a real Redis: the first at once, the rest joined, nothing lost or reordered."""

from __future__ import annotations

import time
from typing import Any

import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stepper.infra import keys
from stepper.infra.streams import BATCH_MAX_CHARS, RedisStreamSink, StreamEvent, read_stream

#: Longer than any pause between two calls of a test, so that what is held stays held until the test says.
HOLD_S = 60.0


def written(client: redis.Redis, task_id: str) -> int:
    return int(client.xlen(keys.stream(task_id)))


def events(client: redis.Redis, task_id: str) -> list[StreamEvent]:
    return list(read_stream(client, task_id, timeout_s=5))


def test_the_first_delta_is_written_at_once_and_the_next_ones_together(redis_client: redis.Redis) -> None:
    sink = RedisStreamSink(redis_client, "t-batch", batch_window_s=HOLD_S)
    sink.delta("Hel")
    assert written(redis_client, "t-batch") == 1
    for piece in ("lo", ", ", "world"):
        sink.delta(piece)
    assert written(redis_client, "t-batch") == 1  # held
    sink.done({"role": "assistant", "content": "Hello, world"})
    assert events(redis_client, "t-batch") == [
        StreamEvent("delta", "Hel"),
        StreamEvent("delta", "lo, world"),
        StreamEvent("done", ""),
    ]
    assert 0 < redis_client.ttl(keys.stream("t-batch")) <= 3600


def test_a_reset_or_an_error_comes_after_the_deltas_held_before_it(redis_client: redis.Redis) -> None:
    sink = RedisStreamSink(redis_client, "t-reset", batch_window_s=HOLD_S)
    sink.delta("a")
    sink.delta("b")
    sink.reset("provider failed")
    sink.delta("c")
    sink.delta("d")
    sink.error("Unavailable: down")
    assert events(redis_client, "t-reset") == [
        StreamEvent("delta", "a"),
        StreamEvent("delta", "b"),
        StreamEvent("reset", "provider failed"),
        StreamEvent("delta", "c"),
        StreamEvent("delta", "d"),
        StreamEvent("error", "Unavailable: down"),
    ]


def test_enough_held_text_is_written_without_waiting(redis_client: redis.Redis) -> None:
    sink = RedisStreamSink(redis_client, "t-size", batch_window_s=HOLD_S)
    sink.delta("first")
    sink.delta("x" * (BATCH_MAX_CHARS - 1))
    assert written(redis_client, "t-size") == 1
    sink.delta("y")
    assert written(redis_client, "t-size") == 2


def test_a_paused_stream_gets_its_held_deltas_written_by_the_flusher(redis_client: redis.Redis) -> None:
    sink = RedisStreamSink(redis_client, "t-pause", batch_window_s=0.05)
    sink.delta("one")
    sink.delta("two")
    sink.delta("three")
    deadline = time.monotonic() + 10
    while written(redis_client, "t-pause") < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [event.text for event in events_so_far(redis_client, "t-pause")] == ["one", "twothree"]


def events_so_far(client: redis.Redis, task_id: str) -> list[StreamEvent]:
    entries: Any = client.xrange(keys.stream(task_id))
    return [StreamEvent(fields[b"type"].decode(), fields[b"text"].decode()) for _id, fields in entries]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pieces=st.lists(st.text(min_size=1, max_size=40), min_size=1, max_size=30))
def test_whatever_the_pieces_a_reader_joins_the_same_text(redis_client: redis.Redis, pieces: list[str]) -> None:
    redis_client.delete(keys.stream("t-prop"))  # the fixture empties Redis once per test, not per example
    sink = RedisStreamSink(redis_client, "t-prop", batch_window_s=0.001)
    for piece in pieces:
        sink.delta(piece)
    sink.done({"role": "assistant", "content": "".join(pieces)})
    read = events(redis_client, "t-prop")
    assert read[-1] == StreamEvent("done", "")
    assert "".join(event.text for event in read[:-1]) == "".join(pieces)
    assert {event.type for event in read[:-1]} == {"delta"}


def test_tool_call_fragments_are_held_with_the_deltas_and_keep_their_order(redis_client: redis.Redis) -> None:
    sink = RedisStreamSink(redis_client, "t-tools", batch_window_s=HOLD_S)
    sink.delta("Let me look. ")
    sink.tool_call(0, "call_1", "lookup", '{"q": ')
    sink.tool_call(0, None, None, '"weather"}')
    sink.delta("Done")
    assert written(redis_client, "t-tools") == 1  # the answer's first fragment only
    sink.done({"role": "assistant", "content": "Let me look. Done"})
    assert events(redis_client, "t-tools") == [
        StreamEvent("delta", "Let me look. "),
        StreamEvent.tool_call(0, "call_1", "lookup", '{"q": '),
        StreamEvent.tool_call(0, None, None, '"weather"}'),
        StreamEvent("delta", "Done"),
        StreamEvent("done", ""),
    ]


def test_an_answer_that_starts_with_a_tool_call_has_it_written_at_once(redis_client: redis.Redis) -> None:
    sink = RedisStreamSink(redis_client, "t-tool-first", batch_window_s=HOLD_S)
    sink.tool_call(0, "call_1", "lookup", "{}")
    assert events_so_far(redis_client, "t-tool-first") == [StreamEvent.tool_call(0, "call_1", "lookup", "{}")]
