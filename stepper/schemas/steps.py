"""``stepper.steps``: the steps of a tutorial found in an ordered list of screenshots."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from stepper.schemas.common import Box, Image, Strict


class StepsRequest(Strict):
    frames: list[Image] = Field(min_length=1, max_length=5000, description="screenshots in recording order")
    threshold: float | None = Field(default=None, gt=0, le=1, description="share of changed pixels that makes a step")


class Step(Strict):
    index: int = Field(ge=0)
    frame: int = Field(ge=0)
    box: Box
    change_ratio: float = Field(ge=0, le=1)
    action: Literal["click", "type", "scroll", "navigate"]
    caption: str | None = None


class StepsOutput(Strict):
    steps: list[Step]
