"""The mock: deterministic, valid against each family's output model, derived from the request."""

from __future__ import annotations

import base64
import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from stepper.contracts import Reply
from stepper.families import FAMILIES
from stepper.providers.mock import MockProvider
from stepper.samples import sample_requests
from stepper.schemas import KINDS, ChatOutput, Kind, ReportOutput, SpeechOutput
from tests.unit.factories import MOCK_SPEC, provider_settings

FUZZ = settings(max_examples=100, deadline=None, database=None)

MOCK = MockProvider(provider_settings("mock", **MOCK_SPEC))


def run(kind: Kind, kwargs: dict[str, Any], model: str = "mock-model") -> Reply[BaseModel]:
    family = FAMILIES[kind]
    return family.invoke(MOCK, family.parse(kwargs), model)


def image(payload: bytes) -> dict[str, str]:
    return {"b64": base64.b64encode(payload).decode()}


#: For each kind, a second request that differs from the sample in something the output depends on.
def varied(kind: Kind) -> dict[str, Any]:
    request = copy.deepcopy(sample_requests()[kind])
    if kind == "report":
        request["commit"]["message"] = "Another subject"
        request["commit"]["files"][0]["additions"] = 1000
    elif kind == "chat":
        request["messages"][0]["content"] = "Something else entirely"
    elif kind == "ocr":
        request["images"] = [image(b"one"), image(b"two")]
    elif kind == "steps":
        request["frames"] = [image(b"a"), image(b"b"), image(b"c")]
    elif kind == "vision":
        request["image"] = image(b"another picture")
    else:
        request["text"] = "Something else to say, at some length this time."
    return request


@pytest.mark.parametrize("kind", KINDS)
def test_output_validates_against_the_family_model(kind: Kind) -> None:
    reply = run(kind, sample_requests()[kind])
    output_model = FAMILIES[kind].output_model
    assert isinstance(reply.output, output_model)
    assert output_model.model_validate(reply.output.model_dump(mode="json")) == reply.output


@pytest.mark.parametrize("kind", KINDS)
def test_same_request_same_output(kind: Kind) -> None:
    first = run(kind, sample_requests()[kind])
    second = run(kind, copy.deepcopy(sample_requests()[kind]))
    assert first == second


@pytest.mark.parametrize("kind", KINDS)
def test_different_requests_different_outputs(kind: Kind) -> None:
    assert run(kind, sample_requests()[kind]).output != run(kind, varied(kind)).output


@pytest.mark.parametrize("kind", [kind for kind in KINDS if kind != "report"])
def test_the_model_changes_the_output(kind: Kind) -> None:
    request = sample_requests()[kind]
    assert run(kind, request, "model-a").output != run(kind, request, "model-b").output


def test_chat_quotes_the_last_user_message() -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "first question"},
        {"role": "assistant", "content": "an answer"},
        {"role": "user", "content": "second question"},
    ]
    output = run("chat", {"messages": messages}).output
    assert isinstance(output, ChatOutput)
    assert (output.message.content or "").endswith("You said: second question")
    assert output.finish_reason == "stop"


def test_chat_respects_max_tokens() -> None:
    reply = run("chat", {"messages": [{"role": "user", "content": "one two three four five six"}], "max_tokens": 3})
    assert isinstance(reply.output, ChatOutput)
    assert reply.output.finish_reason == "length"
    assert len((reply.output.message.content or "").split()) == 3
    assert reply.usage["output_tokens"] == 3


def test_chat_within_max_tokens_stops() -> None:
    reply = run("chat", {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1000})
    assert isinstance(reply.output, ChatOutput)
    assert reply.output.finish_reason == "stop"


def test_report_lists_the_commit_files() -> None:
    request = sample_requests()["report"]
    output = run("report", request).output
    assert isinstance(output, ReportOutput)
    assert [change.path for change in output.changes] == [file["path"] for file in request["commit"]["files"]]
    assert output.title == request["commit"]["message"].splitlines()[0]
    assert output.impact == "medium"
    assert output.tags == ["mock", "py"]


def test_report_of_a_whitespace_message() -> None:
    output = run("report", {"commit": {"sha": "abcdef0", "message": " \n", "files": []}}).output
    assert isinstance(output, ReportOutput)


def test_ocr_gives_one_page_per_image() -> None:
    output = run("ocr", {"images": [image(b"1"), image(b"2"), image(b"3")]}).output
    assert len(output.model_dump()["pages"]) == 3


def test_steps_between_frames() -> None:
    output = run("steps", {"frames": [image(b"a"), image(b"b"), image(b"c")]}).output
    assert [step["frame"] for step in output.model_dump()["steps"]] == [1, 2]


def test_vision_fills_only_the_requested_features() -> None:
    output = run("vision", {"image": image(b"x"), "features": ["faces", "quality"]}).output.model_dump()
    assert output["faces"] is not None
    assert output["quality"] is not None
    assert output["people"] is output["codes"] is output["colors"] is None


def test_speech_voice_and_format() -> None:
    output = run("speech", {"text": "hello there", "voice": "alice", "format": "mp3"}).output
    assert isinstance(output, SpeechOutput)
    assert output.voice == "alice"
    assert output.audio.format == "mp3"
    assert output.audio.uri.endswith(".mp3")


# --- any valid request ---------------------------------------------------------------------------------------------

TEXT = st.text(min_size=1, max_size=40)
CHAT = st.fixed_dictionaries(
    {
        "messages": st.lists(
            st.fixed_dictionaries(
                {"role": st.sampled_from(["system", "user", "assistant"]), "content": st.text(max_size=60)}
            ),
            min_size=1,
            max_size=4,
        )
    },
    optional={"max_tokens": st.integers(1, 50), "model": TEXT},
)
REPORT = st.fixed_dictionaries(
    {
        "commit": st.fixed_dictionaries(
            {
                # A subject with something printable in it; the whitespace-only case is the xfail above.
                "message": st.text(max_size=40).map(lambda text: f"x{text}"),
                "sha": st.text("0123456789abcdef", min_size=7, max_size=40),
                "files": st.lists(
                    st.fixed_dictionaries(
                        {
                            "path": TEXT,
                            "status": st.sampled_from(["added", "modified", "removed", "renamed"]),
                            "additions": st.integers(0, 10_000),
                            "deletions": st.integers(0, 10_000),
                        }
                    ),
                    max_size=5,
                ),
            }
        )
    }
)
SPEECH = st.fixed_dictionaries(
    {"text": st.text(min_size=1, max_size=200)},
    optional={"voice": TEXT, "format": st.sampled_from(["wav", "mp3"])},
)
IMAGES = st.lists(st.binary(min_size=1, max_size=20).map(image), min_size=1, max_size=5)
STRATEGIES: dict[Kind, st.SearchStrategy[dict[str, Any]]] = {
    "chat": CHAT,
    "report": REPORT,
    "speech": SPEECH,
    "ocr": st.fixed_dictionaries({"images": IMAGES}),
    "steps": st.fixed_dictionaries({"frames": IMAGES}),
    "vision": st.fixed_dictionaries(
        {"image": IMAGES.map(lambda images: images[0])},
        optional={"features": st.lists(st.sampled_from(["faces", "people", "codes", "colors", "quality"]), min_size=1)},
    ),
}


@FUZZ
@given(data=st.data(), kind=st.sampled_from(KINDS))
def test_any_valid_request_gives_a_valid_deterministic_output(data: st.DataObject, kind: Kind) -> None:
    kwargs = data.draw(STRATEGIES[kind])
    reply = run(kind, kwargs)
    output_model = FAMILIES[kind].output_model
    assert output_model.model_validate(reply.output.model_dump(mode="json")) == reply.output
    assert run(kind, copy.deepcopy(kwargs)) == reply
    if kind == "chat":
        assert isinstance(reply.output, ChatOutput)
        max_tokens = kwargs.get("max_tokens")
        if max_tokens is not None:
            assert len((reply.output.message.content or "").split()) <= max_tokens
        if reply.output.finish_reason == "length":
            assert max_tokens is not None
