"""The ``howto`` workflow's request, its pieces' validated outputs, the guide, and a workflow's status."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from stepper.schemas.common import Image, Strict
from stepper.schemas.speech import Audio

WorkflowName = Literal["howto"]
WORKFLOWS: tuple[WorkflowName, ...] = ("howto",)

#: RUNNING: pieces are queued or running. WAITING: a piece failed for good; ``resume`` runs what is missing.
#: SUCCESS: the result is stored. CANCELLED: its pieces were revoked.
WorkflowState = Literal["RUNNING", "WAITING", "SUCCESS", "CANCELLED"]
Stage = Literal["steps", "write", "narrate", "assemble", "done"]
STAGES: tuple[Stage, ...] = ("steps", "write", "narrate", "assemble")
PieceState = Literal["pending", "running", "done", "failed"]


class HowtoRequest(Strict):
    """A screen recording (``video``) or ordered screenshots (``frames``), and how the guide should read."""

    video: Image | None = Field(default=None, description="a screen recording (WebM, MP4...)")
    frames: list[Image] = Field(default_factory=list, max_length=5000, description="screenshots in order")
    language: str = Field(default="English", min_length=2, max_length=40, description="the guide's language")
    audience: str | None = Field(default=None, max_length=200, description="who reads it, e.g. 'new employees'")
    voice: str | None = Field(default=None, min_length=1, max_length=200, description="the narration's voice")
    callback_url: str | None = Field(default=None, max_length=2048, pattern=r"^https?://")

    @model_validator(mode="after")
    def _video_or_frames(self) -> HowtoRequest:
        if (self.video is None) == (not self.frames):
            raise ValueError("give a video (a screen recording) or frames (screenshots in order), exactly one")
        return self


class Instruction(Strict):
    """The writing stage's answer for one step: one imperative sentence naming the element in bold."""

    instruction: str = Field(min_length=3, max_length=300, pattern=r"^[^\n]+$")


class Heading(Strict):
    """The writing stage's answer for the guide: its title and a one- or two-sentence summary."""

    title: str = Field(min_length=3, max_length=120, pattern=r"^[^\n]+$")
    summary: str = Field(min_length=3, max_length=600)


class GuideStep(Strict):
    index: int = Field(ge=0)
    action: str
    caption: str | None
    #: A data: URI (PNG), inlined so the JSON stands alone.
    thumbnail: str | None
    instruction: str
    audio: Audio


class Guide(Strict):
    """The assembled guide. ``html`` is an artifact reference (a data: or file: URI) to a self-contained page;
    ``narration`` is every step's audio joined into one file."""

    title: str
    summary: str
    language: str
    steps: list[GuideStep]
    markdown: str
    html: str
    narration: Audio


class PieceStatus(Strict):
    state: PieceState
    task_id: str | None = None
    error: str | None = None


class StageProgress(Strict):
    done: int = Field(ge=0)
    total: int = Field(ge=0)


class WorkflowStatus(Strict):
    """What ``status()``, ``stepper workflow status`` and ``GET /api/v1/workflows/{id}`` say."""

    id: str
    workflow: WorkflowName
    state: WorkflowState
    stage: Stage
    #: Per stage: pieces done and pieces known (the write stage has one per step plus the title).
    progress: dict[Stage, StageProgress]
    pieces: dict[str, PieceStatus]
    error: str | None = None
    result: Guide | None = None
