"""Streams always end, and a client that hangs up cancels its task: the gateway's half, through a real gateway
process, real workers and the official openai SDK.

The trickling fleet's chat provider streams its answer a word at a time for a few seconds, so a client can hang
up while its task is still running; the idle fleet's only worker consumes no chat queue, so a chat task there
never runs.
"""

from __future__ import annotations

import http.client
import json
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import openai
import pytest
import requests
from openai import OpenAI, Stream
from openai.types.chat import ChatCompletionChunk
from prometheus_client.parser import text_string_to_metric_families

from stepper.gateway.auth import key_digest
from stepper.infra import keys
from stepper.infra.connections import as_text
from stepper.infra.revokes import revoked_among
from tests.integration.conftest import COUNTING_CHAINS, GATEWAY_KEY, MOCK_SETTINGS, TEST_PROVIDERS, Fleet
from tests.support.gateway import RunningGateway, running_gateway
from tests.support.providers import calls, serving_task

T = TypeVar("T")

ROUTE = "/v1/chat/completions"
#: About 45 words, 0.1 s apart: a task that is still streaming seconds after its first word.
TRICKLING_SETTINGS: dict[str, Any] = {
    "stepper_providers": {
        **TEST_PROVIDERS,
        "trickle": {"class": "tests.support.providers:TricklingChat", "options": {"words": 40, "delay_s": 0.1}},
    },
    "stepper_chains": {**COUNTING_CHAINS, "chat": ["trickle:trickle-model"]},
}


def gateway_settings(settings: dict[str, Any], **options: Any) -> dict[str, Any]:
    gateway = {"key_hashes": [key_digest(GATEWAY_KEY)], "rpm": 100_000, "tpm": 100_000_000, **options}
    return {**settings, "stepper_gateway": gateway}


@pytest.fixture(scope="module")
def trickling_fleet(start_fleet: Callable[..., Fleet]) -> Fleet:
    return start_fleet(TRICKLING_SETTINGS, name="trickling")


@pytest.fixture(scope="module")
def trickling_gateway(trickling_fleet: Fleet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    directory = Path(tmp_path_factory.mktemp("gateway"))
    with running_gateway(trickling_fleet.url, directory, gateway_settings(TRICKLING_SETTINGS)) as running:
        yield running


@pytest.fixture(scope="module")
def idle_fleet(start_fleet: Callable[..., Fleet]) -> Fleet:
    return start_fleet(MOCK_SETTINGS, name="idle", queues=["ocr"])


@pytest.fixture(scope="module")
def idle_gateway(idle_fleet: Fleet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    # A chat timeout far beyond the test's own waits: a stream that waits for it fails the test.
    settings = gateway_settings(MOCK_SETTINGS, chat_timeout_s=600)
    with running_gateway(idle_fleet.url, Path(tmp_path_factory.mktemp("gateway")), settings) as running:
        yield running


def sdk(gateway: RunningGateway, timeout_s: float = 60) -> OpenAI:
    return OpenAI(base_url=f"{gateway.url}/v1", api_key=GATEWAY_KEY, max_retries=0, timeout=timeout_s)


def fresh(text: str) -> str:
    """``text`` made unique: no cache holds an answer to it yet."""
    return f"{text} {uuid.uuid4().hex[:8]}"


def streamed(
    client: OpenAI, content: str, *, model: str = "trickle-model", temperature: float | None = None
) -> Stream[ChatCompletionChunk]:
    return client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": content}], temperature=temperature, stream=True
    )


def task_of(completion_id: str) -> str:
    assert completion_id.startswith("chatcmpl-")
    return completion_id.removeprefix("chatcmpl-")


def text_of(chunks: list[ChatCompletionChunk]) -> str:
    return "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)


def finishes(chunks: list[ChatCompletionChunk]) -> list[str]:
    return [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]


def disconnects(gateway: RunningGateway) -> float:
    """The gateway's ``stepper_gateway_client_disconnects_total`` for the chat route."""
    text = requests.get(f"{gateway.url}/metrics", headers={"Authorization": f"Bearer {GATEWAY_KEY}"}, timeout=30).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "stepper_gateway_client_disconnects_total" and sample.labels.get("route") == ROUTE:
                return float(sample.value)
    return 0.0


def eventually(probe: Callable[[], T | None], what: str, timeout_s: float = 30) -> T:
    """``probe()``'s first truthy answer within ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if answer := probe():
            return answer
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout_s:g}s: {what}")


def revoked(fleet: Fleet, task_id: str) -> bool:
    return task_id in revoked_among(fleet.redis, [task_id])


def hung_up(gateway: RunningGateway, fleet: Fleet, task_id: str, *, disconnects_before: float) -> None:
    """Assert that the gateway counts one more client that hung up, and revokes its task."""
    eventually(lambda: revoked(fleet, task_id), "the gateway revokes the task of a client that hung up")
    assert disconnects(gateway) == disconnects_before + 1


def test_a_client_that_hangs_up_mid_stream_cancels_its_task(
    trickling_gateway: RunningGateway, trickling_fleet: Fleet
) -> None:
    before = disconnects(trickling_gateway)
    client = sdk(trickling_gateway)
    with streamed(client, fresh("hang up mid-stream")) as stream:
        chunks = iter(stream)
        task_id = task_of(next(chunks).id)
        assert next(chunks).choices[0].delta.content  # the answer is streaming
        assert not revoked(trickling_fleet, task_id)
    # Leaving the block closed the connection with the answer half sent.
    hung_up(trickling_gateway, trickling_fleet, task_id, disconnects_before=before)


def test_a_client_that_hangs_up_while_waiting_cancels_its_task(
    trickling_gateway: RunningGateway, trickling_fleet: Fleet
) -> None:
    before = disconnects(trickling_gateway)
    content = fresh("hang up while waiting")
    body = {"model": "trickle-model", "messages": [{"role": "user", "content": content}]}
    address = urlsplit(trickling_gateway.url)
    connection = http.client.HTTPConnection(address.hostname or "127.0.0.1", address.port, timeout=30)
    headers = {"Authorization": f"Bearer {GATEWAY_KEY}", "Content-Type": "application/json"}
    connection.request("POST", ROUTE, json.dumps(body), headers)
    task_id = eventually(lambda: serving_task(trickling_fleet.redis, content), "the task starts")
    assert not revoked(trickling_fleet, task_id)
    connection.close()  # before any answer
    hung_up(trickling_gateway, trickling_fleet, task_id, disconnects_before=before)


def test_a_task_whose_answer_was_delivered_is_not_revoked(
    trickling_gateway: RunningGateway, trickling_fleet: Fleet
) -> None:
    before = disconnects(trickling_gateway)
    client = sdk(trickling_gateway)
    plain = client.chat.completions.create(
        model="trickle-model", messages=[{"role": "user", "content": fresh("answered plainly")}]
    )
    with streamed(client, fresh("answered in a stream")) as stream:
        chunks = list(stream)  # to [DONE]; leaving the block closes the connection right after it
    assert chunks[-1].choices[0].finish_reason == "stop"
    task_ids = [task_of(plain.id), task_of(chunks[0].id)]
    time.sleep(2)  # a revoke on the connection's close would have landed by now
    assert revoked_among(trickling_fleet.redis, task_ids) == set()
    assert disconnects(trickling_gateway) == before


def test_a_streamed_answer_from_the_gateways_cache_ends_normally(
    trickling_gateway: RunningGateway, trickling_fleet: Fleet
) -> None:
    client = sdk(trickling_gateway)
    content = fresh("asked twice")
    first = list(streamed(client, content, temperature=0))  # temperature 0: an answer that may be cached
    calls_after_first = calls(trickling_fleet.redis, "trickle")
    second = list(streamed(client, content, temperature=0))
    # list() ran to [DONE]: the SDK raises on an error event, and waits (here, until its timeout) for an endless one.
    assert text_of(second) == text_of(first) and "asked twice" in text_of(first)
    assert finishes(first) == finishes(second) == ["stop"]
    assert calls(trickling_fleet.redis, "trickle") == calls_after_first  # the second came from the cache


def test_a_streamed_answer_the_worker_reuses_ends_normally(
    trickling_gateway: RunningGateway, trickling_fleet: Fleet
) -> None:
    """The second of two identical requests arrives while the first is computed: the gateway's cache has
    nothing yet, so its task waits in the worker for the first's answer and computes nothing itself."""
    client = sdk(trickling_gateway)
    content = fresh("asked at once")
    calls_before = calls(trickling_fleet.redis, "trickle")
    with streamed(client, content, temperature=0) as first:
        first_chunks = iter(first)
        head = [next(first_chunks), next(first_chunks)]
        assert head[1].choices[0].delta.content  # the first is being computed
        second = list(streamed(client, content, temperature=0))
        first_text = text_of([*head, *first_chunks])
    assert text_of(second) == first_text and "asked at once" in first_text
    assert finishes(second) == ["stop"]
    assert calls(trickling_fleet.redis, "trickle") == calls_before + 1


def test_a_stream_whose_task_is_revoked_before_it_runs_ends_cancelled(
    idle_gateway: RunningGateway, idle_fleet: Fleet
) -> None:
    client = sdk(idle_gateway, timeout_s=60)
    chunks = iter(streamed(client, fresh("never run"), model="gpt-4o-mini"))
    task_id = task_of(next(chunks).id)
    idle_fleet.app.control.revoke(task_id)
    with pytest.raises(openai.APIError) as ended:
        next(chunks)
    assert ended.value.code == "cancelled"


def test_a_plain_request_whose_task_is_revoked_before_it_runs_is_answered_cancelled(
    idle_gateway: RunningGateway, idle_fleet: Fleet
) -> None:
    journaled = set(idle_fleet.redis.hkeys(keys.inflight_messages()))
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": fresh("never run, plainly")}]}
    headers = {"Authorization": f"Bearer {GATEWAY_KEY}"}
    with ThreadPoolExecutor(1) as pool:
        answer = pool.submit(requests.post, f"{idle_gateway.url}{ROUTE}", json=body, headers=headers, timeout=60)
        # The task id comes with the answer only: take it from the in-flight journal of published messages.
        published = eventually(
            lambda: set(idle_fleet.redis.hkeys(keys.inflight_messages())) - journaled, "the task is published"
        )
        (task_id,) = published
        idle_fleet.app.control.revoke(as_text(task_id))
        response = answer.result()
    assert response.status_code == 499
    assert response.json()["error"]["code"] == "cancelled"
