"""The ``howto`` workflow's pieces, in stage order, and the canvas that computes the missing ones.

    steps          stepper.steps on the recording: action, box, thumbnail and OCR caption of each step
    title, write:i stepper.chat: the guide's heading, and each step's instruction (writing.py validates them)
    narrate:i      stepper.speech: each instruction spoken
    assemble       the guide (assemble.py), on the ``workflows`` queue

A stage's pieces go out as one Celery group, each piece a chain: the family task (on its own queue, so the
fleet spreads them), then ``stepper.workflow.record`` storing its validated output under the workflow's id.
Stages are joined by the record of a stage's last piece, not by a chord's body: a chord never runs its body
once one part failed, and a resumed stage must be joined from pieces of two different dispatches.
"""

from __future__ import annotations

from typing import Any

from stepper.errors import UnprocessableInput
from stepper.schemas.steps import Step, StepsOutput
from stepper.workflows import writing
from stepper.workflows.schemas import HowtoRequest, Stage, StageProgress
from stepper.workflows.store import Snapshot


def steps_of(snapshot: Snapshot) -> list[Step]:
    return StepsOutput.model_validate(snapshot.done["steps"]).steps


def stage_pieces(snapshot: Snapshot) -> list[tuple[Stage, list[str]]]:
    """Every stage with its pieces, as far as they are known (the later stages once the steps are)."""
    if "steps" not in snapshot.done:
        return [("steps", ["steps"]), ("write", []), ("narrate", []), ("assemble", [])]
    count = len(steps_of(snapshot))
    return [
        ("steps", ["steps"]),
        ("write", ["title", *(f"write:{i}" for i in range(count))]),
        ("narrate", [f"narrate:{i}" for i in range(count)]),
        ("assemble", ["assemble"]),
    ]


def current_stage(snapshot: Snapshot) -> tuple[Stage, list[str]]:
    """The first stage not finished, and its pieces not done yet (("done", []) when all are)."""
    for stage, pieces in stage_pieces(snapshot):
        missing = [piece for piece in pieces if piece not in snapshot.done]
        if missing:
            return stage, missing
    return "done", []


def progress(snapshot: Snapshot) -> dict[Stage, StageProgress]:
    return {
        stage: StageProgress(done=sum(piece in snapshot.done for piece in pieces), total=len(pieces) or 1)
        for stage, pieces in stage_pieces(snapshot)
    }


def family_request(snapshot: Snapshot, piece: str) -> tuple[str, dict[str, Any]]:
    """The family task computing ``piece`` and its JSON request."""
    request = HowtoRequest.model_validate(snapshot.meta.request)
    if piece == "steps":
        if request.video is not None:
            return "stepper.steps", {"video": request.video.model_dump(exclude_none=True)}
        return "stepper.steps", {"frames": [frame.model_dump(exclude_none=True) for frame in request.frames]}
    steps = steps_of(snapshot)
    if piece == "title":
        return "stepper.chat", writing.heading_request(request, steps)
    prefix, _, number = piece.partition(":")
    index = int(number)
    if prefix == "write":
        return "stepper.chat", writing.instruction_request(request, steps, index)
    spoken = {"text": _speakable(snapshot.done[f"write:{index}"]["instruction"]), "format": "wav"}
    return "stepper.speech", spoken | ({"voice": request.voice} if request.voice else {})


def validated(snapshot: Snapshot, piece: str, result: dict[str, Any]) -> Any:
    """The part of a family task's result that the workflow keeps for ``piece``; TruncatedOutput or
    UnprocessableInput when it cannot be used."""
    if piece == "steps":
        output = StepsOutput.model_validate(result["output"])
        if not output.steps:
            raise UnprocessableInput("no steps were found in the recording: nothing changed between its frames")
        return output.model_dump(mode="json")
    if piece == "title":
        return writing.parse_heading(result, steps_of(snapshot)).model_dump()
    prefix, _, number = piece.partition(":")
    if prefix == "write":
        return writing.parse_instruction(result, steps_of(snapshot)[int(number)]).model_dump()
    return result["output"]["audio"]


def _speakable(instruction: str) -> str:
    """The instruction as it is read aloud: without Markdown's emphasis marks."""
    return instruction.replace("**", "")
