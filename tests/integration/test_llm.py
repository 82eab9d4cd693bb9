"""LLM chains through real workers and loopback vendors: fallback, Retry-After, streaming, secrets."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from openai import APIError, OpenAI
from openai.types.chat import ChatCompletionMessageParam

from stepper.gateway.auth import key_digest
from stepper.infra.streams import read_stream
from stepper.samples import sample_requests
from tests.integration.conftest import GATEWAY_KEY, Fleet
from tests.support.fake_http import Fault, running, serving
from tests.support.gateway import RunningGateway, running_gateway
from tests.support.tls import self_signed
from tests.support.vendors.openai import FakeOpenAI

OPENAI_KEY = "sk-integration-openai-7f3a9c"
MISTRAL_KEY = "sk-integration-mistral-1b2c3d"
HELLO = {"messages": [{"role": "user", "content": "hello there"}]}
ADAPTER = "stepper.providers.openai:OpenAIProvider"
LLM_SETTINGS: dict[str, Any] = {
    "stepper_providers": {
        "openai": {
            "class": ADAPTER,
            "kinds": ["chat", "report"],
            "api_key_env": "OPENAI_API_KEY",
            "first_token_timeout_s": 2,
        },
        "mistral": {
            "class": ADAPTER,
            "kinds": ["chat", "report"],
            "api_key_env": "MISTRAL_KEY",
            "first_token_timeout_s": 2,
        },
    },
    "stepper_chains": {
        "chat": ["openai:gpt-4o-mini", "mistral:mistral-7b"],
        "report": ["openai:gpt-4o-mini", "mistral:mistral-7b"],
    },
    "stepper_breaker": {"fail_max": 50, "reset_timeout_s": 300},
    "stepper_retry": {"attempts_per_provider": 2, "backoff_base_s": 0.05, "max_inline_wait_s": 2.0},
}


@pytest.fixture(scope="module")
def openai() -> Iterator[FakeOpenAI]:
    yield from running(FakeOpenAI(OPENAI_KEY, "fake-openai"))  # type: ignore[misc]


@pytest.fixture(scope="module")
def mistral() -> Iterator[FakeOpenAI]:
    yield from running(FakeOpenAI(MISTRAL_KEY, "fake-mistral"))  # type: ignore[misc]


@pytest.fixture(scope="module")
def llm_fleet(start_fleet: Callable[..., Fleet], openai: FakeOpenAI, mistral: FakeOpenAI) -> Fleet:
    return start_fleet(
        LLM_SETTINGS,
        name="llm",
        env={
            "OPENAI_API_KEY": OPENAI_KEY,
            "MISTRAL_KEY": MISTRAL_KEY,
            "STEPPER_OPENAI_BASE_URL": openai.base_url,
            "STEPPER_MISTRAL_BASE_URL": mistral.base_url,
        },
    )


@pytest.fixture(autouse=True)
def clean_fakes(openai: FakeOpenAI, mistral: FakeOpenAI) -> None:
    for fake in (openai, mistral):
        fake.requests.clear()
        fake.faults.clear()
        fake.script.contents.clear()
        fake.script.finish_reasons.clear()


def test_chat_is_served_by_the_first_provider(llm_fleet: Fleet, openai: FakeOpenAI) -> None:
    result = llm_fleet.app.send_task("stepper.chat", kwargs=HELLO).get(timeout=30)
    assert result["provider"] == "openai"
    assert result["output"]["message"]["content"] == "fake-openai says: hello there"
    assert result["usage"]["input_tokens"] >= 1
    assert len(openai.requests) == 1


def test_streamed_chats_over_tls_share_one_vendor_connection_in_a_worker(
    start_fleet: Callable[..., Fleet], tmp_path_factory: pytest.TempPathFactory
) -> None:
    certificate = self_signed(tmp_path_factory.mktemp("tls"))
    with serving(FakeOpenAI(OPENAI_KEY, "tls-openai", tls=certificate.server_context())) as vendor:
        settings = {**LLM_SETTINGS, "stepper_chains": {"chat": ["openai:gpt-4o-mini"]}}
        env = {
            "OPENAI_API_KEY": OPENAI_KEY,
            "STEPPER_OPENAI_BASE_URL": vendor.base_url,  # https://127.0.0.1:<port>/v1
            "REQUESTS_CA_BUNDLE": str(certificate.cert_path),
        }
        fleet = start_fleet(settings, name="tls", env=env)
        for _ in range(3):
            result = fleet.app.send_task("stepper.chat", kwargs={**HELLO, "stream": True}).get(timeout=30)
            assert result["output"]["message"]["content"] == "tls-openai says: hello there"
        assert len(vendor.requests) == 3
        assert len({request.peer for request in vendor.requests}) == 1  # one TLS handshake for three streams


def test_retry_after_is_honoured_then_fallback(llm_fleet: Fleet, openai: FakeOpenAI, mistral: FakeOpenAI) -> None:
    openai.inject(
        Fault(status=429, body={"error": {"message": "Rate limit reached"}}, headers={"Retry-After": "1"}),
        Fault(status=503, body={"error": {"message": "overloaded"}}),
    )
    result = llm_fleet.app.send_task("stepper.chat", kwargs=HELLO).get(timeout=30)
    assert result["provider"] == "mistral"
    assert [(a["provider"], a["outcome"]) for a in result["attempts"]] == [
        ("openai", "rate_limited"),
        ("openai", "retryable_error"),
        ("mistral", "ok"),
    ]
    first, second = openai.requests
    assert second.arrived - first.arrived >= 1.0  # the worker waited out Retry-After: 1


def test_cut_off_report_moves_to_the_next_provider(llm_fleet: Fleet, openai: FakeOpenAI, mistral: FakeOpenAI) -> None:
    openai.script.finish_reasons.extend(["length", "length"])
    result = llm_fleet.app.send_task("stepper.report", kwargs=sample_requests()["report"]).get(timeout=30)
    assert result["provider"] == "mistral"
    assert result["output"]["title"] == "Report by fake-mistral"
    assert [a["outcome"] for a in result["attempts"]] == ["retryable_error", "retryable_error", "ok"]
    assert "output tokens" in result["attempts"][0]["error"]


def test_stream_resets_when_a_provider_fails_mid_answer(llm_fleet: Fleet, openai: FakeOpenAI) -> None:
    openai.inject(Fault(stop_stream_after=3), Fault(stop_stream_after=3))
    request = {"messages": [{"role": "user", "content": "tell me a long story please"}], "stream": True}
    result = llm_fleet.app.send_task("stepper.chat", kwargs=request)
    events = list(read_stream(llm_fleet.redis, result.id, timeout_s=30))
    answer = result.get(timeout=30)
    assert answer["provider"] == "mistral"
    kinds = [event.type for event in events]
    assert kinds[-1] == "done"
    assert "reset" in kinds
    after_last_reset = len(kinds) - 1 - kinds[::-1].index("reset")
    text = "".join(event.text for event in events[after_last_reset:] if event.type == "delta")
    assert text == answer["output"]["message"]["content"] == "fake-mistral says: tell me a long story please"


@pytest.fixture(scope="module")
def llm_gateway(llm_fleet: Fleet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    settings = {**LLM_SETTINGS, "stepper_gateway": {"key_hashes": [key_digest(GATEWAY_KEY)]}}
    with running_gateway(llm_fleet.url, Path(tmp_path_factory.mktemp("llm-gateway")), settings) as gateway:
        yield gateway


def stream_through(gateway: RunningGateway, content: str, received: list[str], task_ids: list[str]) -> None:
    """Stream a completion with the openai SDK into ``received``; ``task_ids`` gets the stepper task's id."""
    client = OpenAI(base_url=f"{gateway.url}/v1", api_key=GATEWAY_KEY, max_retries=0, timeout=30)
    messages: list[ChatCompletionMessageParam] = [{"role": "user", "content": content}]
    for chunk in client.chat.completions.create(model="gpt-4o-mini", messages=messages, stream=True):
        task_ids.append(chunk.id.removeprefix("chatcmpl-"))
        received.extend(choice.delta.content or "" for choice in chunk.choices)


def test_a_gateway_stream_that_cannot_take_back_its_text_ends_in_an_error(
    llm_gateway: RunningGateway, llm_fleet: Fleet, openai: FakeOpenAI
) -> None:
    openai.inject(Fault(stop_stream_after=3), Fault(stop_stream_after=3))
    received: list[str] = []
    task_ids: list[str] = []
    with pytest.raises(APIError, match="restarted on another provider"):
        stream_through(llm_gateway, "tell me a long story please", received, task_ids)
    assert "".join(received).startswith("fake-openai")  # openai's first words had gone out to the caller
    # The task itself goes on and completes; let it finish before the next test counts requests.
    answer = llm_fleet.app.AsyncResult(task_ids[0]).get(timeout=30)
    assert answer["output"]["message"]["content"].endswith("says: tell me a long story please")


def test_a_provider_failing_before_any_text_leaves_the_gateway_stream_whole(
    llm_gateway: RunningGateway, openai: FakeOpenAI
) -> None:
    openai.inject(Fault(stop_stream_after=0), Fault(stop_stream_after=0))  # connections dropped before any event
    received: list[str] = []
    stream_through(llm_gateway, "a short one", received, [])
    assert len(openai.requests) == 3  # both failures happened...
    assert "".join(received) == "fake-openai says: a short one"  # ...and the caller saw only the answer


def test_no_key_reaches_the_worker_log(llm_fleet: Fleet, openai: FakeOpenAI) -> None:
    openai.inject(Fault(status=401, body={"error": {"message": f"Incorrect API key provided: {OPENAI_KEY}"}}))
    result = llm_fleet.app.send_task("stepper.chat", kwargs=HELLO).get(timeout=30)
    assert result["attempts"][0]["outcome"] == "permanent_error"
    assert OPENAI_KEY not in str(result)
    log = llm_fleet.worker.log()
    assert "rejected our credentials" in log
    assert OPENAI_KEY not in log and MISTRAL_KEY not in log


def test_breaker_opens_fleet_wide_on_a_failing_vendor(
    start_fleet: Callable[..., Fleet], openai: FakeOpenAI, mistral: FakeOpenAI
) -> None:
    adapter = "stepper.providers.openai:OpenAIProvider"
    fleet = start_fleet(
        {
            "stepper_providers": {
                "openai": {"class": adapter, "api_key_env": "OPENAI_API_KEY", "first_token_timeout_s": 2},
                "mistral": {"class": adapter, "api_key_env": "MISTRAL_KEY", "first_token_timeout_s": 2},
            },
            "stepper_chains": {"chat": ["openai:gpt-4o-mini", "mistral:mistral-7b"]},
            "stepper_breaker": {"fail_max": 2, "reset_timeout_s": 300},
            "stepper_retry": {"attempts_per_provider": 1},
        },
        name="llm-breaker",
        concurrency=2,
        env={
            "OPENAI_API_KEY": OPENAI_KEY,
            "MISTRAL_KEY": MISTRAL_KEY,
            "STEPPER_OPENAI_BASE_URL": openai.base_url,
            "STEPPER_MISTRAL_BASE_URL": mistral.base_url,
        },
    )
    openai.inject(*[Fault(status=503, body={"error": {"message": "overloaded"}})] * 10)
    outcomes = [
        fleet.app.send_task("stepper.chat", kwargs=HELLO).get(timeout=30)["attempts"][0]["outcome"] for _ in range(4)
    ]
    assert outcomes == ["retryable_error", "retryable_error", "circuit_open", "circuit_open"]
    assert len(openai.requests) == 2  # the open breaker kept the last two calls from reaching the vendor
    assert len(mistral.requests) == 4
