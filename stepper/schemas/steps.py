"""``stepper.steps``: the steps of a tutorial found in an ordered list of screenshots, or in a screen recording."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from stepper.schemas.common import Box, Image, Strict, TaskRequest


class StepsRequest(TaskRequest):
    #: Omitted when a video is given; given, it must hold at least one frame.
    frames: list[Image] = Field(
        default_factory=list, min_length=1, max_length=5000, description="screenshots in recording order"
    )
    video: Image | None = Field(
        default=None, description="a screen recording (MP4/MOV, AVI, WebM/Matroska) instead of frames"
    )
    threshold: float | None = Field(default=None, gt=0, le=1, description="share of changed pixels that makes a step")
    max_frames: int | None = Field(
        default=None, ge=1, description="video: frames to sample at most; lowers the worker's limit, never raises it"
    )
    max_seconds: float | None = Field(
        default=None, gt=0, description="video: seconds to read at most; lowers the worker's limit, never raises it"
    )

    @model_validator(mode="after")
    def _frames_or_video(self) -> StepsRequest:
        if self.frames and self.video is not None:
            raise ValueError("give frames or a video, not both")
        if not self.frames and self.video is None:
            raise ValueError("give frames (screenshots in recording order) or a video")
        return self


class Thumbnail(Strict):
    """The step's changed region as a PNG: a data: URI when small, else a reference to the artifact store."""

    uri: str
    bytes: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    format: Literal["png"]


class Step(Strict):
    index: int = Field(ge=0)
    frame: int = Field(ge=0)
    box: Box
    change_ratio: float = Field(ge=0, le=1)
    action: Literal["click", "type", "scroll", "navigate"]
    caption: str | None = None
    thumbnail: Thumbnail | None = None


class StepsOutput(Strict):
    """The steps, and how much of the input they come from: a video read only in part says ``truncated``."""

    steps: list[Step]
    #: Frames compared: every screenshot given, or the frames sampled from the video.
    frames_read: int = Field(default=0, ge=0)
    #: Video only: the timestamp of the last frame read (seconds from the start); None for screenshots.
    seconds_read: float | None = Field(default=None, ge=0)
    #: True when a bound (max_frames, max_seconds) stopped the reading before the video's end.
    truncated: bool = False
