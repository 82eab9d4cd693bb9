"""The official openai SDK, unchanged, against the gateway: models, completions plain and streamed, its errors."""

from __future__ import annotations

from typing import Any

import openai
import pytest
from openai import OpenAI

from tests.integration.conftest import GATEWAY_KEY, Fleet
from tests.support.gateway import RunningGateway
from tests.support.monitor import monitored


@pytest.fixture
def client(gateway: RunningGateway) -> OpenAI:
    return OpenAI(base_url=f"{gateway.url}/v1", api_key=GATEWAY_KEY, max_retries=0, timeout=30)


def worker_answer(fleet: Fleet, **request: Any) -> str:
    """What the worker itself answers to the same stepper.chat request, sent directly through Celery."""
    request = {**request, "cache": "bypass"}
    result = fleet.app.send_task("stepper.chat", kwargs=request).get(timeout=30)
    text: str = result["output"]["message"]["content"]
    return text


def test_models_list_the_chat_chain(client: OpenAI) -> None:
    ids = [model.id for model in client.models.list()]
    assert ids == ["gpt-4o-mini", "mistral-7b-instruct", "gemini-2.0-flash", "command-r-plus-08-2024", "space"]


def test_a_completion_matches_the_workers_answer(client: OpenAI, gateway_fleet: Fleet) -> None:
    completion = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "plain question"}], max_tokens=50
    )
    assert completion.object == "chat.completion"
    choice = completion.choices[0]
    assert choice.message.role == "assistant" and choice.finish_reason == "stop"
    expected = worker_answer(
        gateway_fleet, messages=[{"role": "user", "content": "plain question"}], model="gpt-4o-mini", max_tokens=50
    )
    assert choice.message.content == expected and "plain question" in expected
    assert completion.usage is not None and completion.usage.total_tokens >= completion.usage.prompt_tokens


def test_a_streamed_completion_matches_the_workers_answer(client: OpenAI, gateway_fleet: Fleet) -> None:
    stream = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "streamed question"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    finishes = [chunk.choices[0].finish_reason for chunk in chunks if chunk.choices and chunk.choices[0].finish_reason]
    assert finishes == ["stop"] and chunks[-1].usage is not None
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "streamed question"}]
    expected = worker_answer(gateway_fleet, messages=messages, model="gpt-4o-mini")
    assert text == expected and "streamed question" in text


def test_a_streamed_completion_ends_from_its_stream_alone(client: OpenAI, gateway_fleet: Fleet) -> None:
    """The stream's ``done`` event brings the finish reason and the usage: the gateway neither subscribes to the
    task's result channel nor reads its result."""
    with monitored(gateway_fleet.redis) as seen:
        chunks = list(
            client.chat.completions.create(
                model="gpt-4o-mini",
                messages=[{"role": "user", "content": "ended by its stream"}],
                stream=True,
                stream_options={"include_usage": True},
            )
        )
    task_id = chunks[0].id.removeprefix("chatcmpl-")
    stored = gateway_fleet.app.AsyncResult(task_id).get(timeout=30)
    usage = chunks[-1].usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens) == (
        stored["usage"]["input_tokens"],
        stored["usage"]["output_tokens"],
    )
    finishes = [chunk.choices[0].finish_reason for chunk in chunks if chunk.choices and chunk.choices[0].finish_reason]
    assert finishes == [stored["output"]["finish_reason"]]
    listened_or_read = [
        command["command"]
        for command in seen
        if f"celery-task-meta-{task_id}" in command["command"]
        and command["client_type"] != "lua"  # the worker's store is a script that reads what is stored first
        and command["command"].split()[0].upper() in {"SUBSCRIBE", "UNSUBSCRIBE", "GET", "MGET"}
    ]
    assert listened_or_read == []


def test_errors_reach_the_sdk_as_its_own_exceptions(gateway: RunningGateway) -> None:
    good = OpenAI(base_url=f"{gateway.url}/v1", api_key=GATEWAY_KEY, max_retries=0)
    with pytest.raises(openai.NotFoundError) as missing:
        good.chat.completions.create(model="gpt-5-imaginary", messages=[{"role": "user", "content": "hi"}])
    assert missing.value.code == "model_not_found"
    with pytest.raises(openai.UnprocessableEntityError):
        good.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "tool", "content": "hi"}])  # type: ignore[misc, list-item]
    wrong = OpenAI(base_url=f"{gateway.url}/v1", api_key="stp_wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        wrong.models.list()
