"""The flavoured OpenAI-compatible fake itself, checked with plain ``requests``: it must say what each server says,
or the adapters' tests against it prove nothing."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from stepper.providers.vendor_errors import read_vendor_error
from tests.support.vendors.openai_compatible import FakeOpenAICompatible, Flavour, prompt_tokens

FLAVOURS: list[Flavour] = ["openai", "vllm", "tgi", "llamacpp", "ollama", "litellm"]


Start = Callable[..., FakeOpenAICompatible]


@pytest.fixture
def start() -> Iterator[Start]:
    """Start a fake of a flavour (options as FakeOpenAICompatible takes them); all are stopped after the test."""
    fakes: list[FakeOpenAICompatible] = []

    def make(flavour: Flavour, **options: Any) -> FakeOpenAICompatible:
        fake = FakeOpenAICompatible(flavour, **options)
        fake.start()
        fakes.append(fake)
        return fake

    yield make
    for fake in fakes:
        fake.stop()


def post(fake: FakeOpenAICompatible, body: dict[str, Any], **kwargs: Any) -> requests.Response:
    return requests.post(f"{fake.base_url}/chat/completions", json=body, timeout=5, **kwargs)


def events(response: requests.Response) -> list[str]:
    """The data lines of an SSE answer, comments and blank lines dropped."""
    return [
        line.removeprefix("data: ") for line in response.iter_lines(decode_unicode=True) if line.startswith("data:")
    ]


def request(content: str = "hello there", **extra: Any) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": content}], **extra}


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_streams_the_flavours_shape(start: Start, flavour: Flavour) -> None:
    fake = start(flavour)
    fake.chunks = 3
    answer = events(post(fake, request(stream=True, stream_options={"include_usage": True}), stream=True))
    assert answer[-1] == "[DONE]"
    chunks = [json.loads(data) for data in answer[:-1]]
    deltas = [chunk["choices"][0]["delta"] for chunk in chunks if chunk["choices"]]
    assert "".join(delta.get("content") or "" for delta in deltas) == "piece0 piece1 piece2 "
    assert deltas[0]["role"] == "assistant"
    assert [chunk["choices"][0]["finish_reason"] for chunk in chunks if chunk["choices"]][-1] == "stop"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["completion_tokens"] == 3


@pytest.mark.parametrize(
    ("flavour", "first_delta"),
    [
        ("openai", {"role": "assistant", "content": "", "refusal": None}),
        ("vllm", {"role": "assistant", "content": ""}),
        ("tgi", {"role": "assistant", "content": "piece0 "}),
        ("llamacpp", {"role": "assistant", "content": None}),
        ("ollama", {"role": "assistant", "content": "piece0 "}),
    ],
)
def test_first_chunk_and_no_usage_unless_asked(start: Start, flavour: Flavour, first_delta: dict[str, Any]) -> None:
    fake = start(flavour)
    fake.chunks = 2
    chunks = [json.loads(data) for data in events(post(fake, request(stream=True), stream=True))[:-1]]
    assert chunks[0]["choices"][0]["delta"] == first_delta
    assert all(chunk.get("usage") is None for chunk in chunks)


def test_strict_mode_answers_fastapis_422(start: Start) -> None:
    fake = start("vllm", strict=True)
    response = post(fake, request(stream=True, stream_options={"include_usage": True}))
    assert response.status_code == 422
    assert response.json() == {
        "detail": [
            {
                "type": "extra_forbidden",
                "loc": ["body", "stream_options"],
                "msg": "Extra inputs are not permitted",
                "input": {"include_usage": True},
            }
        ]
    }
    assert read_vendor_error(422, response.json()).param == "stream_options"


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_context_overflow_in_the_flavours_words(start: Start, flavour: Flavour) -> None:
    fake = start(flavour, context_tokens=100)
    response = post(fake, request("x" * 400))  # 134 tokens at three characters a token
    error = read_vendor_error(response.status_code, response.json())
    assert response.status_code in {400, 422}
    assert error.meaning == "context_overflow"
    if flavour != "ollama":  # Ollama's words state no numbers
        assert (error.limit_tokens, error.requested_tokens) == (100, 134)


def test_vllm_legacy_errors_are_flat(start: Start) -> None:
    fake = start("vllm", context_tokens=100)
    fake.legacy_errors = True
    body = post(fake, request("x" * 400, max_tokens=50)).json()
    assert body["object"] == "error"
    assert body["message"].startswith("This model's maximum context length is 100 tokens. However, you requested 184")
    error = read_vendor_error(400, body)
    assert (error.meaning, error.limit_tokens, error.requested_tokens) == ("context_overflow", 100, 184)


def test_cjk_counts_one_token_a_character() -> None:
    assert prompt_tokens("你好世界") == 4
    assert prompt_tokens("abcdef") == 2


def test_tgi_reports_overflow_inside_a_200_stream(start: Start) -> None:
    fake = start("tgi", context_tokens=3)
    response = post(fake, request("数据太长了", stream=True), stream=True)
    assert response.status_code == 200
    first, done = events(response)
    assert done == "[DONE]"
    assert read_vendor_error(200, json.loads(first)).meaning == "context_overflow"


@pytest.mark.parametrize(("flavour", "ends_with_done"), [("vllm", True), ("llamacpp", False), ("litellm", False)])
def test_error_event_in_the_middle_of_a_stream(start: Start, flavour: Flavour, ends_with_done: bool) -> None:
    fake = start(flavour)
    fake.chunks, fake.stream_error_after = 4, 2
    answer = events(post(fake, request(stream=True), stream=True))
    assert (answer[-1] == "[DONE]") is ends_with_done
    error = json.loads(answer[-2] if ends_with_done else answer[-1])
    assert read_vendor_error(200, error).message.endswith("the fake server failed mid-stream")


def test_keepalive_comments_come_before_the_first_chunk(start: Start) -> None:
    fake = start("tgi")
    fake.keepalive_comments = 2
    lines = list(post(fake, request(stream=True), stream=True).iter_lines(decode_unicode=True))
    assert lines[:4] == [":", "", ":", ""]


def test_next_errors_are_answered_in_order(start: Start) -> None:
    fake = start("openai")
    fake.next_errors.extend([(429, {"error": {"message": "slow down", "code": "rate_limit_exceeded"}}), (502, "bad")])
    assert post(fake, request()).status_code == 429
    assert post(fake, request()).text == "bad"
    assert post(fake, request()).status_code == 200


def test_records_when_the_client_hung_up(start: Start) -> None:
    fake = start("vllm")
    fake.chunks, fake.delay_between_chunks_s = 50, 0.2
    response = post(fake, request(stream=True), stream=True)
    lines = response.iter_lines(decode_unicode=True)
    next(line for line in lines if line.startswith("data:"))
    closed_at = time.monotonic()
    response.close()
    while fake.streams[0].hung_up_at is None and time.monotonic() < closed_at + 5:
        time.sleep(0.01)
    log = fake.streams[0]
    assert log.hung_up_at is not None and not log.completed
    assert log.hung_up_at - closed_at < 1.0


def test_records_a_client_that_gave_up_before_the_first_byte(start: Start) -> None:
    fake = start("llamacpp")
    fake.first_byte_delay_s = 3.0
    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.post(f"{fake.base_url}/chat/completions", json=request(stream=True), stream=True, timeout=(1, 0.3))
    gave_up_at = time.monotonic()
    while fake.streams[0].hung_up_at is None and time.monotonic() < gave_up_at + 5:
        time.sleep(0.01)
    assert fake.streams[0].hung_up_at is not None
    assert fake.streams[0].frames_sent == 0
