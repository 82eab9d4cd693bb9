"""Many task streams followed over one Redis connection, on a real Redis."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from redis.exceptions import ConnectionError as RedisConnectionError

from stepper.infra.stream_hub import StreamHub
from stepper.infra.streams import RedisStreamSink, StreamEvent, done_event
from tests.support.monitor import monitored
from tests.support.streaming import chat_result

ANSWER = chat_result("Hello, world")
DONE = done_event(ANSWER)
#: Longer than any test waits: a read that blocked this long would show as a test timing out.
LONG_BLOCK_MS = 120_000


@pytest.fixture
def hub(redis_client: redis.Redis) -> Iterator[StreamHub]:
    followed = StreamHub(redis_client, block_ms=LONG_BLOCK_MS)
    yield followed
    followed.close()


async def not_ended() -> list[StreamEvent]:
    return []


async def follow(hub: StreamHub, task_id: str, timeout_s: float = 30) -> list[StreamEvent]:
    return [event async for event in hub.events(task_id, timeout_s, not_ended)]


def answer(client: redis.Redis, task_id: str, pieces: list[str]) -> None:
    sink = RedisStreamSink(client, task_id, batch_window_s=0)
    for piece in pieces:
        sink.delta(piece)
    sink.done(ANSWER)


def test_each_reader_gets_its_own_events_in_order(hub: StreamHub, redis_client: redis.Redis) -> None:

    async def scenario() -> list[list[StreamEvent]]:
        readers = [asyncio.create_task(follow(hub, f"t-{index}")) for index in range(3)]
        await asyncio.sleep(0.05)  # the hub is blocked reading the three empty streams
        for index in (2, 0, 1):
            await asyncio.to_thread(answer, redis_client, f"t-{index}", [f"{index}a", f"{index}b"])
        return await asyncio.wait_for(asyncio.gather(*readers), 30)

    got = asyncio.run(scenario())
    assert got == [[StreamEvent("delta", f"{index}a"), StreamEvent("delta", f"{index}b"), DONE] for index in range(3)]


def test_a_new_reader_does_not_wait_for_the_read_under_way(hub: StreamHub, redis_client: redis.Redis) -> None:
    """The hub is blocked on a silent stream when a second reader comes for a finished one: it is woken."""
    answer(redis_client, "finished", ["all"])

    async def scenario() -> list[StreamEvent]:
        silent = asyncio.create_task(follow(hub, "silent"))
        await asyncio.sleep(0.05)
        try:
            return await asyncio.wait_for(follow(hub, "finished"), 30)
        finally:
            silent.cancel()

    assert asyncio.run(scenario()) == [StreamEvent("delta", "all"), DONE]


def wakes(seen: list[dict[str, Any]]) -> int:
    """The hub's wakes among the commands ``MONITOR`` saw: appends to its wake stream."""
    return sum(entry["command"].startswith("XADD") and ":stream-hub:" in entry["command"] for entry in seen)


def test_readers_that_come_during_one_read_wake_it_once(hub: StreamHub, redis_client: redis.Redis) -> None:
    """Fifty readers come while the hub is blocked on a silent stream: the first wakes the read, the others count
    on that wake, and the next read brings every one its events (on a busy machine a new read may begin before
    the last of them come: they wake that one)."""
    readers = 50
    for index in range(readers):
        answer(redis_client, f"come-{index}", [str(index)])

    async def scenario() -> list[list[StreamEvent]]:
        silent = asyncio.create_task(follow(hub, "silent"))
        await asyncio.sleep(0.1)  # the hub is blocked reading the silent stream
        try:
            return await asyncio.wait_for(asyncio.gather(*(follow(hub, f"come-{i}") for i in range(readers))), 30)
        finally:
            silent.cancel()

    with monitored(redis_client) as seen:
        got = asyncio.run(scenario())
    assert got == [[StreamEvent("delta", str(index)), DONE] for index in range(readers)]
    assert 1 <= wakes(seen) <= 2


def test_a_reader_of_an_idle_hub_wakes_nothing(hub: StreamHub, redis_client: redis.Redis) -> None:
    """No read is under way while nobody is followed: the first reader's stream is in the hub's next read."""
    answer(redis_client, "first", ["only"])
    with monitored(redis_client) as seen:
        got = asyncio.run(follow(hub, "first"))
    assert got == [StreamEvent("delta", "only"), DONE]
    assert wakes(seen) == 0


def test_a_task_that_ended_without_writing_ends_its_stream(redis_client: redis.Redis) -> None:
    hub = StreamHub(redis_client, block_ms=50)
    asked = threading.Event()

    async def ended() -> list[StreamEvent]:
        asked.set()
        return [StreamEvent("cancelled", "revoked before it ran")]

    async def scenario() -> list[StreamEvent]:
        return [event async for event in hub.events("never-written", 30, ended)]

    try:
        assert asyncio.run(scenario()) == [StreamEvent("cancelled", "revoked before it ran")]
    finally:
        hub.close()
    assert asked.is_set()


def test_hundreds_of_readers_share_one_blocking_read(hub: StreamHub, redis_client: redis.Redis) -> None:
    readers = 300

    def reading() -> int:
        return sum(client["cmd"] == "xread" for client in redis_client.client_list())

    others = reading()  # blocked reads of other tests' processes on this shared server

    async def scenario() -> tuple[list[list[StreamEvent]], int]:
        followed = [asyncio.create_task(follow(hub, f"many-{index}")) for index in range(readers)]
        await asyncio.sleep(0.3)
        blocked = reading()
        for index in range(readers):
            answer(redis_client, f"many-{index}", [str(index)])
        return await asyncio.wait_for(asyncio.gather(*followed), 60), blocked

    got, blocked = asyncio.run(scenario())
    assert got == [[StreamEvent("delta", str(index)), DONE] for index in range(readers)]
    assert blocked - others == 1


def test_a_redis_error_reaches_the_reader() -> None:
    hub = StreamHub(redis.Redis(port=1, socket_connect_timeout=0.2), block_ms=LONG_BLOCK_MS)
    with pytest.raises(RedisConnectionError):
        asyncio.run(follow(hub, "unreachable"))
    hub.close()


@pytest.mark.parametrize("attempt", range(5))
def test_text_written_while_ended_is_asked_comes_once(redis_client: redis.Redis, attempt: int) -> None:
    """The stream's end arrives while the reader asks ``ended`` after a silence: the rest of the stream is
    yielded, not the whole answer again on top of what was yielded."""
    task_id = f"late-{attempt}"
    sink = RedisStreamSink(redis_client, task_id, batch_window_s=0)
    sink.delta("Hello, ")
    hub = StreamHub(redis_client, block_ms=100)

    async def ended() -> list[StreamEvent]:
        await asyncio.to_thread(sink.delta, "world")
        await asyncio.to_thread(sink.done, ANSWER)
        await asyncio.sleep(0.01 * attempt)  # let the hub's read deliver them, or not
        return [StreamEvent("delta", "Hello, world"), DONE]

    async def scenario() -> list[StreamEvent]:
        return [event async for event in hub.events(task_id, 30, ended)]

    try:
        got = asyncio.run(scenario())
    finally:
        hub.close()
    assert got == [StreamEvent("delta", "Hello, "), StreamEvent("delta", "world"), DONE]
