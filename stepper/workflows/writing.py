"""The writing stage: the chat requests that write each step's instruction and the guide's heading, and the
strict validation of their answers (JSON against a model, as report outputs are validated).

An instruction is written from the step's action, its OCR caption (the text of the element that changed) and
its neighbours, and must name the element in bold when the caption names one: "Click **Save** in the top
toolbar." An answer from the ``mock`` provider (mock and hybrid modes) is a labelled stand-in, not JSON: the
guide then gets a template sentence built from the same facts, so a dry run still yields a whole guide.
"""

from __future__ import annotations

import json
import re
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from stepper.errors import TruncatedOutput
from stepper.schemas.common import describe_validation_error
from stepper.schemas.steps import Step
from stepper.workflows.schemas import Heading, HowtoRequest, Instruction

M = TypeVar("M", bound=BaseModel)

_VERBS = {"click": "Click", "type": "Type in", "scroll": "Scroll to", "navigate": "Go to"}
_FENCE = re.compile(r"^```(?:json)?\s*|\s*```$")
_BOLD = re.compile(r"\*\*[^*\n]+\*\*")

SYSTEM = (
    "You write step-by-step software guides. Each instruction is one short imperative sentence in {language} "
    "for {audience}. Name the element the user acts on in bold Markdown, using its visible label "
    '("Click **Save** in the top toolbar."). Reply with JSON only, no prose around it.'
)


def _describe(step: Step) -> str:
    label = repr(step.caption) if step.caption else "no readable label"
    x, y, width, height = step.box
    return f"step {step.index + 1}: {step.action} on an element labelled {label}, at x={x} y={y} ({width}x{height} px)"


def instruction_request(request: HowtoRequest, steps: list[Step], index: int) -> dict[str, Any]:
    """The ``stepper.chat`` request that writes step ``index``'s instruction."""
    step = steps[index]
    context = [
        f"Previous {_describe(steps[index - 1])}" if index > 0 else "This is the first step.",
        f"Next {_describe(steps[index + 1])}" if index + 1 < len(steps) else "This is the last step.",
    ]
    user = "\n".join(
        [
            f"Write the instruction for {_describe(step)}.",
            f"Clicked element: {step.caption or '(unlabelled)'}",
            *context,
            'Answer as {"instruction": "<one sentence>"}.',
        ]
    )
    return _chat(request, user, max_tokens=200)


def heading_request(request: HowtoRequest, steps: list[Step]) -> dict[str, Any]:
    """The ``stepper.chat`` request that writes the guide's title and summary."""
    listed = "\n".join(_describe(step) for step in steps)
    user = (
        f"The guide's steps:\n{listed}\n" + 'Answer as {"title": "<how to ...>", "summary": "<one or two sentences>"}.'
    )
    return _chat(request, user, max_tokens=300)


def _chat(request: HowtoRequest, user: str, *, max_tokens: int) -> dict[str, Any]:
    system = SYSTEM.format(language=request.language, audience=request.audience or "a general audience")
    # bypass: an answer that fails validation must not come back from the cache when the piece is resumed.
    return {
        "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}],
        "max_tokens": max_tokens,
        "cache": "bypass",
    }


def parse_instruction(result: dict[str, Any], step: Step) -> Instruction:
    """The instruction in a ``stepper.chat`` result; ``TruncatedOutput`` when it is not valid."""
    if result["provider"] == "mock":
        return Instruction(instruction=template_instruction(step))
    instruction = _parse(result, Instruction)
    if step.caption and not _BOLD.search(instruction.instruction):
        raise TruncatedOutput(f"instruction {instruction.instruction!r} does not name the element in **bold**")
    return instruction


def parse_heading(result: dict[str, Any], steps: list[Step]) -> Heading:
    """The title and summary in a ``stepper.chat`` result; ``TruncatedOutput`` when they are not valid."""
    if result["provider"] == "mock":
        labels = [step.caption for step in steps if step.caption]
        return Heading(
            title=f"How to {labels[-1]}" if labels else "How to follow this recording",
            summary=f"A guide in {len(steps)} step(s), written from a screen recording (mock writer).",
        )
    return _parse(result, Heading)


def template_instruction(step: Step) -> str:
    """A sentence from the step's facts alone: what the mock writer gives instead of an LLM's answer. The
    caption's lines (OCR keeps them) become one, and asterisks are dropped so the bold stays bold."""
    label = " ".join((step.caption or "").replace("*", " ").split())
    if not label:
        return f"{_VERBS[step.action]} the highlighted area."
    return f"{_VERBS[step.action]} **{label}**."


def _parse(result: dict[str, Any], model: type[M]) -> M:
    content = str(result["output"]["message"]["content"]).strip()
    try:
        return model.model_validate(json.loads(_FENCE.sub("", content)))
    except json.JSONDecodeError as exc:
        raise TruncatedOutput(f"the writer's answer is not JSON ({exc}): {content[:200]!r}") from None
    except ValidationError as exc:
        raise TruncatedOutput(f"the writer's answer is not valid: {describe_validation_error(exc)}") from None
