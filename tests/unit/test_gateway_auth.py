"""Gateway keys, their settings, and how an OpenAI request becomes a stepper.chat request."""

from __future__ import annotations

import hashlib

import pytest

from stepper.config import load_config, parse_stepper_settings
from stepper.errors import ChainExhausted, ConfigError, InvalidRequest
from stepper.families import FAMILIES
from stepper.gateway.auth import key_digest, match_key, new_key
from stepper.gateway.openai_compat import ChatCompletionRequest, _unservable, to_chat_request
from stepper.settings import StepperSettings


def test_a_new_key_matches_its_digest_and_nothing_else() -> None:
    key, digest = new_key()
    assert digest == hashlib.sha256(key.encode()).hexdigest() and key != new_key()[0]
    other = key_digest("stp_other")
    found = match_key(key, (other, digest))
    assert found is not None and found.identity == digest[:8]
    assert match_key(key + "x", (other, digest)) is None
    assert match_key(key, ()) is None


def settings_with(environ: dict[str, str]) -> StepperSettings:
    return parse_stepper_settings(load_config({"CELERY_CONFIG_MODULE": "stepper_tests_absent", **environ}))


def test_key_hashes_come_from_the_environment_normalised() -> None:
    digest = key_digest("stp_a")
    settings = settings_with({"STEPPER_GATEWAY_KEY_HASHES": f" {digest.upper()} ,,{key_digest('stp_b')}"})
    assert settings.gateway.key_hashes == (digest, key_digest("stp_b"))
    assert settings.gateway.rpm == 600  # the rest of the defaults stay


def test_a_key_configured_instead_of_its_digest_stops_start_up_without_echoing_it() -> None:
    with pytest.raises(ConfigError) as refused:
        settings_with({"STEPPER_GATEWAY_KEY_HASHES": "stp_secret-key-pasted-by-mistake"})
    assert "not a SHA-256 hex digest" in str(refused.value)
    assert "stp_secret-key-pasted-by-mistake" not in str(refused.value)


def test_an_openai_request_maps_to_a_chat_request() -> None:
    body = ChatCompletionRequest.model_validate(
        {
            "model": "gpt-4o-mini",
            "messages": [
                {"role": "developer", "content": "be brief"},
                {"role": "user", "content": [{"type": "text", "text": "hel"}, {"type": "text", "text": "lo"}]},
            ],
            "temperature": 0,
            "max_completion_tokens": 20,
            "max_tokens": 99,
            "stream": True,
            "top_p": 0.5,
            "stop": "END",
            "seed": 7,
            "user": "u-1",
            "parallel_tool_calls": False,  # accepted, ignored
        }
    )
    assert to_chat_request(body) == {
        "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello"}],
        "model": "gpt-4o-mini",
        "temperature": 0,
        "top_p": 0.5,
        "stop": "END",
        "seed": 7,
        "user": "u-1",
        "max_tokens": 20,
        "stream": True,
    }
    plain = ChatCompletionRequest.model_validate({"model": "m", "messages": [{"role": "user", "content": "x"}]})
    assert to_chat_request(plain) == {"messages": [{"role": "user", "content": "x"}], "model": "m"}


def test_only_an_assistants_tool_calls_may_come_without_content() -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    body = ChatCompletionRequest.model_validate(
        {"model": "m", "messages": [{"role": "user", "content": "x"}, {"role": "assistant", "tool_calls": [call]}]}
    )
    assert to_chat_request(body)["messages"][1] == {"role": "assistant", "content": None, "tool_calls": [call]}
    FAMILIES["chat"].parse(to_chat_request(body))
    silent = ChatCompletionRequest.model_validate({"model": "m", "messages": [{"role": "user", "content": None}]})
    with pytest.raises(InvalidRequest, match=r"messages\.0\.content"):
        FAMILIES["chat"].parse(to_chat_request(silent))


def test_only_a_chain_of_providers_that_cannot_serve_the_request_is_unservable() -> None:
    cannot = {"outcome": "permanent_error", "error": "UnsupportedInput: gemini cannot serve logprobs"}
    skipped = {"outcome": "skipped", "error": "GEMINI_API_KEY is not set"}
    down = {"outcome": "retryable_error", "error": "Unavailable: openai answered 503"}
    assert _unservable(ChainExhausted("x", [cannot, skipped]))
    assert not _unservable(ChainExhausted("x", [cannot, down], retryable=True))
    assert not _unservable(ChainExhausted("x", [skipped]))
    assert not _unservable(ChainExhausted("x", [cannot, {"outcome": "permanent_error", "error": "AuthError: 401"}]))
