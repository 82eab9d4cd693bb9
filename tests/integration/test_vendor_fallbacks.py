"""Real servers' failures, through real workers and the gateway: what each one means decides what comes next.

The self-hosted providers are loopback fakes answering as vLLM, Ollama and a strict (extra-forbidding) server
do (tests/support/vendors/openai_compatible.py); Gemini is the Gemini fake.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from openai import OpenAI

from stepper.errors import Cancelled
from stepper.gateway.auth import key_digest
from stepper.infra import keys
from stepper.infra.streams import StreamEvent, read_stream
from stepper.producer import outcome_events
from tests.integration.conftest import GATEWAY_KEY, Fleet
from tests.support.fake_http import running
from tests.support.gateway import RunningGateway, running_gateway
from tests.support.vendors.gemini import FakeGemini
from tests.support.vendors.openai_compatible import FakeOpenAICompatible, StreamLog

GEMINI_KEY = "gm-fallbacks-5e6f7a"
ADAPTER = "stepper.providers.openai:OpenAIProvider"
#: About 9,100 tokens to the servers (one per CJK character) but about 3,000 by stepper's chars/3 estimate.
LONG_CJK = "请总结这段对话。" * 1140


def self_hosted(fake: FakeOpenAICompatible, model: str, budget: tuple[int, int], **extra: Any) -> dict[str, Any]:
    return {
        "class": ADAPTER,
        "kinds": ["chat", "report"],
        "base_url": fake.base_url,
        "models": [model],
        "budget": {"input_tokens": budget[0], "output_tokens": budget[1]},
        "options": {"response_format": "json_object"},
        **extra,
    }


@pytest.fixture(scope="module")
def vllm() -> Iterator[FakeOpenAICompatible]:
    yield from running(FakeOpenAICompatible("vllm", context_tokens=8192))  # type: ignore[misc]


@pytest.fixture(scope="module")
def ollama() -> Iterator[FakeOpenAICompatible]:
    yield from running(FakeOpenAICompatible("ollama", context_tokens=2048))  # type: ignore[misc]


@pytest.fixture(scope="module")
def strict() -> Iterator[FakeOpenAICompatible]:
    yield from running(FakeOpenAICompatible("vllm", strict=True))  # type: ignore[misc]


@pytest.fixture(scope="module")
def gemini() -> Iterator[FakeGemini]:
    yield from running(FakeGemini(GEMINI_KEY))  # type: ignore[misc]


@pytest.fixture(autouse=True)
def clean(vllm: FakeOpenAICompatible, ollama: FakeOpenAICompatible, strict: FakeOpenAICompatible) -> None:
    for fake in (vllm, ollama, strict):
        fake.requests.clear()
        fake.streams.clear()
        fake.next_errors.clear()
        fake.first_byte_delay_s = fake.delay_between_chunks_s = 0.0
        fake.chunks = None
        fake.stream_error_after = None


@dataclass
class Vendors:
    vllm: FakeOpenAICompatible
    ollama: FakeOpenAICompatible
    strict: FakeOpenAICompatible
    gemini: FakeGemini


@pytest.fixture(scope="module")
def vendors(
    vllm: FakeOpenAICompatible, ollama: FakeOpenAICompatible, strict: FakeOpenAICompatible, gemini: FakeGemini
) -> Vendors:
    return Vendors(vllm, ollama, strict, gemini)


def fleet_settings(vendors: Vendors) -> dict[str, Any]:
    vllm, ollama, strict, gemini = vendors.vllm, vendors.ollama, vendors.strict, vendors.gemini
    return {
        "stepper_providers": {
            "vllm": self_hosted(vllm, "mistral-7b", (6000, 2048)),
            "ollama": self_hosted(ollama, "mistral-7b", (1500, 500)),
            "strict": self_hosted(strict, "strict-7b", (6000, 2048), first_token_timeout_s=1),
            "gemini": {
                "class": "stepper.providers.gemini:GeminiProvider",
                "kinds": ["chat", "report"],
                "api_key_env": "GEMINI_API_KEY",
                "base_url": gemini.base_url,
                "models": ["gemini-2.0-flash", "mistral-7b", "strict-7b"],
                "budget": {"input_tokens": 32000, "output_tokens": 4096},
            },
        },
        # A request's model picks the entries serving it: mistral-7b -> vllm, ollama, gemini; strict-7b -> strict,
        # gemini.
        "stepper_chains": {
            "chat": ["vllm:mistral-7b", "ollama:mistral-7b", "strict:strict-7b", "gemini:gemini-2.0-flash"],
            "report": ["gemini:gemini-2.0-flash"],
        },
        "stepper_breaker": {"fail_max": 50, "reset_timeout_s": 300},
        "stepper_retry": {"attempts_per_provider": 2, "backoff_base_s": 0.05, "task_max_retries": 0},
    }


@pytest.fixture(scope="module")
def fleet(start_fleet: Callable[..., Fleet], vendors: Vendors) -> Fleet:
    settings = fleet_settings(vendors)
    return start_fleet(settings, name="fallbacks", concurrency=2, env={"GEMINI_API_KEY": GEMINI_KEY})


@pytest.fixture(scope="module")
def gateway(fleet: Fleet, vendors: Vendors, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    settings = {**fleet_settings(vendors), "stepper_gateway": {"key_hashes": [key_digest(GATEWAY_KEY)]}}
    with running_gateway(fleet.url, Path(tmp_path_factory.mktemp("fallbacks-gateway")), settings) as running_one:
        yield running_one


def chat(fleet: Fleet, content: str, model: str, **options: Any) -> Any:
    request = {"messages": [{"role": "user", "content": content}], "model": model, "cache": "bypass", **options}
    return fleet.app.send_task("stepper.chat", kwargs=request)


def events_of(fleet: Fleet, task_id: str) -> list[StreamEvent]:
    def ended() -> list[StreamEvent]:
        return outcome_events(fleet.app.AsyncResult(task_id))

    return list(read_stream(fleet.redis, task_id, timeout_s=30, ended=ended))


def client(gateway: RunningGateway) -> OpenAI:
    return OpenAI(base_url=f"{gateway.url}/v1", api_key=GATEWAY_KEY, max_retries=0, timeout=30)


def test_a_context_overflow_falls_back_past_a_smaller_model_to_one_that_fits(
    fleet: Fleet, vllm: FakeOpenAICompatible, ollama: FakeOpenAICompatible
) -> None:
    result = chat(fleet, LONG_CJK, "mistral-7b").get(timeout=60)
    assert result["provider"] == "gemini"
    outcomes = [(a["provider"], a["outcome"]) for a in result["attempts"]]
    assert outcomes == [("vllm", "too_large"), ("ollama", "skipped"), ("gemini", "ok")]
    assert "maximum context length is 8192 tokens" in result["attempts"][0]["error"]
    assert "smaller than the" in result["attempts"][1]["error"]
    assert len(vllm.requests) == 1 and ollama.requests == []  # no second try of a request that cannot fit


def test_a_refused_optional_parameter_is_dropped_and_remembered_fleet_wide(
    fleet: Fleet, strict: FakeOpenAICompatible
) -> None:
    first = chat(fleet, "stream to a strict server", "strict-7b", stream=True)
    events = events_of(fleet, first.id)
    result = first.get(timeout=30)
    assert result["provider"] == "strict"
    assert [a["outcome"] for a in result["attempts"]] == ["unsupported_parameter", "ok"]
    assert "body.stream_options: Extra inputs are not permitted" in result["attempts"][0]["error"]
    assert events[-1].type == "done"
    assert "".join(e.text for e in events if e.type == "delta") == result["output"]["message"]["content"]
    assert fleet.redis.smembers(keys.refused_parameters("strict", "strict-7b")) == {b"stream_options"}
    second = chat(fleet, "and again", "strict-7b", stream=True).get(timeout=30)
    assert [a["outcome"] for a in second["attempts"]] == ["ok"]  # left out at once: one request, no refusal
    assert ["stream_options" in request.json() for request in strict.requests] == [True, False, False]


def test_the_official_sdk_streams_through_a_server_that_refuses_stream_options(
    gateway: RunningGateway, strict: FakeOpenAICompatible
) -> None:
    stream = client(gateway).chat.completions.create(
        model="strict-7b", messages=[{"role": "user", "content": "sdk, strict"}], stream=True
    )
    chunks = list(stream)
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    assert text == "vllm says: sdk, strict"
    assert [chunk.choices[0].finish_reason for chunk in chunks if chunk.choices][-1] == "stop"


def test_a_missed_first_token_moves_on_to_the_next_provider(fleet: Fleet, strict: FakeOpenAICompatible) -> None:
    strict.first_byte_delay_s = 4
    result = chat(fleet, "anyone there?", "strict-7b").get(timeout=60)
    assert result["provider"] == "gemini"
    assert [a["outcome"] for a in result["attempts"]] == ["retryable_error", "ok"]
    assert "FirstTokenTimeout" in result["attempts"][0]["error"]
    assert len(strict.requests) == 1  # not tried again: a silent server gets no second wait


def slow_stream(fake: FakeOpenAICompatible) -> None:
    """A forty-second answer: 200 chunks, 0.2 s apart."""
    fake.chunks = 200
    fake.delay_between_chunks_s = 0.2


def first_delta(fleet: Fleet, task_id: str) -> None:
    for event in read_stream(fleet.redis, task_id, timeout_s=30):
        if event.type == "delta":
            return
    pytest.fail("the stream ended before its first delta")


def hung_up(log: StreamLog, since: float, within_s: float = 10) -> float:
    deadline = time.monotonic() + within_s
    while log.hung_up_at is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert log.hung_up_at is not None, "the worker never closed its vendor connection"
    return log.hung_up_at - since


def test_revoking_a_streaming_task_closes_the_vendor_stream(fleet: Fleet, vllm: FakeOpenAICompatible) -> None:
    slow_stream(vllm)
    result = chat(fleet, "a long story", "mistral-7b", stream=True)
    first_delta(fleet, result.id)
    revoked_at = time.monotonic()
    result.revoke()
    assert events_of(fleet, result.id)[-1].type == "cancelled"
    with pytest.raises(Cancelled):
        result.get(timeout=30)
    (log,) = vllm.streams
    assert hung_up(log, revoked_at) < 10  # the answer had 38 more seconds to go
    assert not log.completed and log.frames_sent < 100


def test_a_gateway_client_hanging_up_closes_the_vendor_stream(
    gateway: RunningGateway, fleet: Fleet, vllm: FakeOpenAICompatible
) -> None:
    slow_stream(vllm)
    stream = client(gateway).chat.completions.create(
        model="mistral-7b", messages=[{"role": "user", "content": "then I leave"}], stream=True
    )
    task_id = ""
    for chunk in stream:
        task_id = chunk.id.removeprefix("chatcmpl-")
        if chunk.choices and chunk.choices[0].delta.content:
            break
    left_at = time.monotonic()
    stream.close()
    (log,) = vllm.streams
    assert hung_up(log, left_at) < 10
    assert not log.completed
    task = fleet.app.AsyncResult(task_id)
    with pytest.raises(Cancelled):
        task.get(timeout=30)
    assert task.state == "REVOKED"


def test_a_vendor_error_midway_through_a_stream_is_classified_and_the_chain_moves_on(
    fleet: Fleet, vllm: FakeOpenAICompatible
) -> None:
    vllm.stream_error_after = 2
    try:
        result = chat(fleet, "fail midway", "mistral-7b", stream=True).get(timeout=30)
    finally:
        vllm.stream_error_after = None
    assert [a["provider"] for a in result["attempts"]][-1] == "ollama"
    assert "failed mid-stream" in result["attempts"][0]["error"]
