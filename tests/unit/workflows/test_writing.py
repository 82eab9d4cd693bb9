"""The writing stage's prompts carry what names the element, and its answers are validated strictly."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stepper.errors import TruncatedOutput
from stepper.schemas.steps import Step
from stepper.workflows.schemas import HowtoRequest, Instruction
from stepper.workflows.writing import instruction_request, parse_heading, parse_instruction, template_instruction

REQUEST = HowtoRequest.model_validate({"frames": [{"b64": "aGVsbG8="}], "language": "German", "audience": "nurses"})


def step(index: int, caption: str | None, action: str = "click") -> Step:
    return Step.model_validate(
        {
            "index": index,
            "frame": index + 1,
            "box": [10, 20, 30, 40],
            "change_ratio": 0.1,
            "action": action,
            "caption": caption,
        }
    )


def answered(content: str, provider: str = "vllm") -> dict[str, Any]:
    return {"provider": provider, "output": {"message": {"role": "assistant", "content": content}}}


def test_the_prompt_names_the_element_its_neighbours_and_the_readers() -> None:
    steps = [step(0, "File"), step(1, "Save"), step(2, "Share")]
    request = instruction_request(REQUEST, steps, 1)
    system, user = (message["content"] for message in request["messages"])
    assert "German" in system and "nurses" in system
    assert "Clicked element: Save" in user
    assert "Previous step 1: click on an element labelled 'File'" in user
    assert "Next step 3: click on an element labelled 'Share'" in user
    assert request["cache"] == "bypass"  # a resumed piece asks again rather than reading a rejected answer
    first, last = (instruction_request(REQUEST, steps, i)["messages"][1]["content"] for i in (0, 2))
    assert "This is the first step." in first and "This is the last step." in last


@pytest.mark.parametrize(
    "content",
    [
        '{"instruction": "Click **Save** in the top toolbar."}',
        '```json\n{"instruction": "Click **Save** in the top toolbar."}\n```',
    ],
)
def test_a_valid_answer_gives_the_instruction(content: str) -> None:
    assert parse_instruction(answered(content), step(1, "Save")).instruction == "Click **Save** in the top toolbar."


@pytest.mark.parametrize(
    ("content", "why"),
    [
        ("Click Save.", "not JSON"),
        ('{"instruction": "Click Save."}', "does not name the element"),
        ('{"instruction": "Click **Save**.", "extra": 1}', "extra"),
        ('{"instruction": "Click **Save**.\\nThen wait."}', "instruction"),
    ],
)
def test_an_invalid_answer_is_a_truncated_output_saying_why(content: str, why: str) -> None:
    with pytest.raises(TruncatedOutput, match=why):
        parse_instruction(answered(content), step(1, "Save"))


def test_an_unlabelled_step_needs_no_bold() -> None:
    assert parse_instruction(answered('{"instruction": "Click the icon."}'), step(0, None)).instruction


def test_the_mock_writer_gets_a_template_sentence_from_the_facts() -> None:
    mocked = answered("[mock 1234] You said: ...", provider="mock")
    assert parse_instruction(mocked, step(0, "Save", "type")).instruction == "Type in **Save**."
    heading = parse_heading(mocked, [step(0, "Open"), step(1, "Send")])
    assert heading.title == "How to Send" and "2 step(s)" in heading.summary


def test_a_heading_is_validated_too() -> None:
    with pytest.raises(TruncatedOutput, match="title"):
        parse_heading(answered(json.dumps({"summary": "no title"})), [step(0, "Open")])


@given(st.text(max_size=200), st.sampled_from(["click", "type", "scroll", "navigate"]))
def test_a_template_is_a_valid_instruction_whatever_ocr_read(caption: str, action: str) -> None:
    Instruction(instruction=template_instruction(step(0, caption, action)))
