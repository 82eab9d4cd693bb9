"""Deltas written in batches on a real Redis: the first at once, the rest joined, nothing lost or reordered."""

from __future__ import annotations

import json
import time
from typing import Any

import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stepper.infra import keys
from stepper.infra.streams import BATCH_MAX_CHARS, RedisStreamSink, StreamEvent, done_event, read_stream
from tests.support.streaming import chat_result

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
    sink.done(chat_result("Hello, world"))
    assert events(redis_client, "t-batch") == [
        StreamEvent("delta", "Hel"),
        StreamEvent("delta", "lo, world"),
        done_event(chat_result("Hello, world")),
    ]
    assert 0 < redis_client.ttl(keys.stream("t-batch")) <= 3600


def test_done_carries_what_ends_the_answer(redis_client: redis.Redis) -> None:
    """A relay ends the answer from the ``done`` event alone: finish reason, logprobs and usage."""
    result = chat_result("Hi there")
    result["output"]["logprobs"] = {"content": [{"token": "Hi", "logprob": -0.1, "bytes": [72, 105]}]}
    sink = RedisStreamSink(redis_client, "t-done", batch_window_s=HOLD_S)
    sink.delta("Hi there")
    sink.done(result)
    last = events(redis_client, "t-done")[-1]
    assert last.type == "done"
    assert json.loads(last.text) == {
        "finish_reason": "stop",
        "logprobs": {"content": [{"token": "Hi", "logprob": -0.1, "bytes": [72, 105]}]},
        "usage": {"input_tokens": 7, "output_tokens": 2},
    }


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
    sink.done(chat_result("".join(pieces)))
    read = events(redis_client, "t-prop")
    assert read[-1] == done_event(chat_result("".join(pieces)))
    assert "".join(event.text for event in read[:-1]) == "".join(pieces)
    assert {event.type for event in read[:-1]} == {"delta"}


def test_tool_call_fragments_are_held_with_the_deltas_and_keep_their_order(redis_client: redis.Redis) -> None:
    sink = RedisStreamSink(redis_client, "t-tools", batch_window_s=HOLD_S)
    sink.delta("Let me look. ")
    sink.tool_call(0, "call_1", "lookup", '{"q": ')
    sink.tool_call(0, None, None, '"weather"}')
    sink.delta("Done")
    assert written(redis_client, "t-tools") == 1  # the answer's first fragment only
    sink.done(chat_result("Let me look. Done", "tool_calls"))
    assert events(redis_client, "t-tools") == [
        StreamEvent("delta", "Let me look. "),
        StreamEvent.tool_call(0, "call_1", "lookup", '{"q": '),
        StreamEvent.tool_call(0, None, None, '"weather"}'),
        StreamEvent("delta", "Done"),
        done_event(chat_result("Let me look. Done", "tool_calls")),
    ]


def test_an_answer_that_starts_with_a_tool_call_has_it_written_at_once(redis_client: redis.Redis) -> None:
    sink = RedisStreamSink(redis_client, "t-tool-first", batch_window_s=HOLD_S)
    sink.tool_call(0, "call_1", "lookup", "{}")
    assert events_so_far(redis_client, "t-tool-first") == [StreamEvent.tool_call(0, "call_1", "lookup", "{}")]
