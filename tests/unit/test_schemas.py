"""The request models of the six families, through ``Family.parse``: the public JSON contract."""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from stepper.errors import InvalidRequest
from stepper.families import FAMILIES
from stepper.samples import sample_requests
from stepper.schemas import KINDS, ChatRequest, Kind, TaskResult
from tests.support.fuzzing import JSON_VALUES, mutate

FUZZ = settings(max_examples=150, deadline=None, database=None)


PNG_B64 = sample_requests()["vision"]["image"]["b64"]


def parse(kind: Kind, kwargs: Any) -> BaseModel:
    return FAMILIES[kind].parse(kwargs)


def parse_error(kind: Kind, kwargs: Any) -> str:
    with pytest.raises(InvalidRequest) as raised:
        parse(kind, kwargs)
    message = str(raised.value)
    assert message.startswith(f"invalid {kind} request: ")
    return message


def chat(**extra: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": "hello"}], **extra}


# --- the samples and the family table -------------------------------------------------------------------


def test_every_kind_has_a_family() -> None:
    assert set(FAMILIES) == set(KINDS)
    for kind, family in FAMILIES.items():
        assert family.kind == kind


@pytest.mark.parametrize("kind", KINDS)
def test_sample_request_parses(kind: Kind) -> None:
    request = parse(kind, sample_requests()[kind])
    assert type(request) is FAMILIES[kind].request_model
    again = parse(kind, json.loads(json.dumps(request.model_dump(mode="json"))))
    assert again == request


@pytest.mark.parametrize("kind", KINDS)
def test_unknown_field_is_rejected(kind: Kind) -> None:
    message = parse_error(kind, {**sample_requests()[kind], "priorty": "batch"})
    assert "priorty: Extra inputs are not permitted" in message


@pytest.mark.parametrize("kind", KINDS)
def test_empty_request_is_refused_naming_the_required_fields(kind: Kind) -> None:
    message = parse_error(kind, {})
    required = [name for name, field in FAMILIES[kind].request_model.model_fields.items() if field.is_required()]
    for name in required:
        assert f"{name}: Field required" in message


# --- field paths in messages ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "kwargs", "path"),
    [
        (
            "chat",
            {"messages": [{"role": "user", "content": "a"}, {"role": "robot", "content": "b"}]},
            "messages.1.role",
        ),
        ("chat", {"messages": [{"role": "user"}]}, "messages.0.content"),
        ("chat", {"messages": [{"role": "user", "content": "a", "name": "x"}]}, "messages.0.name"),
        ("chat", {"messages": []}, "messages"),
        ("chat", chat(temperature=2.5), "temperature"),
        ("chat", chat(max_tokens=0), "max_tokens"),
        ("chat", chat(model=""), "model"),
        ("chat", chat(stream="sometimes"), "stream"),
        ("report", {"commit": {"sha": "xyz", "message": "m", "files": []}}, "commit.sha"),
        (
            "report",
            {
                "commit": {
                    "sha": "abcdef0",
                    "message": "m",
                    "files": [{"path": "a.py", "status": "moved", "additions": 1, "deletions": 0}],
                }
            },
            "commit.files.0.status",
        ),
        ("ocr", {"images": [{"url": "https://example.com/a.png"}], "lang": "en"}, "lang"),
        ("ocr", {"images": [{"url": "https://example.com/a.png"}], "psm": 14}, "psm"),
        ("ocr", {"images": [{"url": "https://example.com/a.png"}], "preprocess": ["sharpen"]}, "preprocess.0"),
        ("steps", {"frames": [{"url": "https://example.com/a.png"}], "threshold": 0}, "threshold"),
        ("vision", {"image": {"url": "https://example.com/a.png"}, "features": ["faces", "cats"]}, "features.1"),
        ("vision", {"image": {"url": "https://example.com/a.png"}, "features": []}, "features"),
        ("speech", {"text": ""}, "text"),
        ("speech", {"text": "hi", "format": "flac"}, "format"),
    ],
)
def test_message_names_the_field_path(kind: Kind, kwargs: dict[str, Any], path: str) -> None:
    message = parse_error(kind, kwargs)
    assert f" {path}: " in f" {message.split(': ', 1)[1]}"


def test_every_problem_is_reported() -> None:
    message = parse_error("chat", {"messages": [{"role": "robot", "content": 5}], "temperature": -1})
    for path in ("messages.0.role", "messages.0.content", "temperature"):
        assert f"{path}: " in message
    assert message.count("; ") == 2


# --- images ------------------------------------------------------------------------------------------------------


def vision(image: Any) -> dict[str, Any]:
    return {"image": image}


@pytest.mark.parametrize(
    "image",
    [
        {"b64": PNG_B64},
        {"b64": base64.b64encode(b"not really a png").decode()},
        {"path": "screens/a.png"},
        {"url": "https://example.com/a.png"},
        {"url": "http://127.0.0.1:8000/a.png"},
    ],
)
def test_image_with_one_source(image: dict[str, str]) -> None:
    request = parse("vision", vision(image))
    assert request.model_dump(exclude_none=True)["image"] == image


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        ({}, "image: Value error, give exactly one of b64, path or url (got none)"),
        ({"b64": PNG_B64, "url": "https://example.com/a.png"}, "(got b64, url)"),
        ({"path": "a.png", "url": "https://example.com/a.png"}, "(got path, url)"),
        ({"b64": None, "path": None, "url": None}, "(got none)"),
    ],
)
def test_image_needs_exactly_one_source(image: dict[str, Any], expected: str) -> None:
    assert expected in parse_error("vision", vision(image))


@pytest.mark.parametrize("b64", ["not base64!", "abc", "aGVsbG8=aGVsbG8=x", "é" * 8])
def test_image_b64_must_be_base64(b64: str) -> None:
    assert "image.b64: " in parse_error("vision", vision({"b64": b64}))


@pytest.mark.parametrize(
    "url", ["ftp://example.com/a.png", "file:///etc/passwd", "example.com/a.png", "javascript:alert(1)"]
)
def test_image_url_must_be_http(url: str) -> None:
    assert "image.url: " in parse_error("vision", vision({"url": url}))


def test_image_source_must_not_be_empty() -> None:
    assert "image.path: " in parse_error("vision", vision({"path": ""}))


def test_image_paths_in_lists() -> None:
    frames = [{"url": "https://example.com/1.png"}, {"url": "https://example.com/2.png", "b64": PNG_B64}]
    assert "frames.1: " in parse_error("steps", {"frames": frames})
    assert "images.0.url: " in parse_error("ocr", {"images": [{"url": "gopher://x"}]})


# --- fuzzing: arbitrary JSON never raises anything but InvalidRequest ------------------------------------------------


def _check_parse_or_invalid(kind: Kind, kwargs: dict[str, Any]) -> None:
    try:
        request = parse(kind, kwargs)
    except InvalidRequest as exc:
        assert str(exc).startswith(f"invalid {kind} request: ")
    else:
        assert type(request) is FAMILIES[kind].request_model


@FUZZ
@given(kind=st.sampled_from(KINDS), data=st.data())
def test_arbitrary_kwargs_parse_or_raise_invalid_request(kind: Kind, data: st.DataObject) -> None:
    fields = sorted(FAMILIES[kind].request_model.model_fields)
    keys = st.sampled_from(fields) | st.text(max_size=10)
    kwargs = data.draw(st.dictionaries(keys, JSON_VALUES, max_size=6))
    _check_parse_or_invalid(kind, kwargs)


@FUZZ
@given(kind=st.sampled_from(KINDS), data=st.data())
def test_mutated_samples_parse_or_raise_invalid_request(kind: Kind, data: st.DataObject) -> None:
    kwargs = mutate(data, copy.deepcopy(sample_requests()[kind]))
    if isinstance(kwargs, dict):
        _check_parse_or_invalid(kind, kwargs)


# --- valid chat requests ---------------------------------------------------------------------------------------------

MESSAGES = st.lists(
    st.fixed_dictionaries({"role": st.sampled_from(["system", "user", "assistant"]), "content": st.text(max_size=50)}),
    min_size=1,
    max_size=5,
)
OPTIONAL_CHAT_FIELDS = {
    "model": st.text(min_size=1, max_size=200),
    "max_tokens": st.integers(1, 1_000_000),
    "temperature": st.floats(0, 2),
    "stream": st.booleans(),
    "top_p": st.floats(0, 1),
    "seed": st.integers(-(2**63), 2**63 - 1),
    "stop": st.lists(st.text(min_size=1, max_size=10), min_size=1, max_size=4),
    "presence_penalty": st.floats(-2, 2),
    "frequency_penalty": st.floats(-2, 2),
    "user": st.text(max_size=256),
}
VALID_CHAT = st.fixed_dictionaries({"messages": MESSAGES}, optional=OPTIONAL_CHAT_FIELDS)


@FUZZ
@given(kwargs=VALID_CHAT)
def test_valid_chat_requests_parse_and_round_trip(kwargs: dict[str, Any]) -> None:
    request = parse("chat", kwargs)
    assert isinstance(request, ChatRequest)
    assert [message.model_dump(exclude_none=True) for message in request.messages] == kwargs["messages"]
    for name in OPTIONAL_CHAT_FIELDS:
        assert getattr(request, name) == kwargs.get(name, ChatRequest.model_fields[name].default)
    dumped = request.model_dump(mode="json", exclude_none=True)
    assert parse("chat", json.loads(json.dumps(dumped))) == request
    assert {key: value for key, value in dumped.items() if key in kwargs} == kwargs


# --- the task result envelope -------------------------------------------------------------------------------------


def test_task_result_rejects_an_unknown_outcome() -> None:
    result = {
        "kind": "chat",
        "output": {},
        "provider": "mock",
        "model": "m",
        "attempts": [{"provider": "mock", "model": "m", "outcome": "exploded", "ms": 1.0}],
        "elapsed_ms": 1.0,
    }
    with pytest.raises(ValueError, match=r"attempts\.0\.outcome"):
        TaskResult.model_validate(result)
