"""``stepper.vision``: what is in one image."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from stepper.schemas.common import Box, Image, Strict, TaskRequest

#: ``text`` (whether the image holds text) runs OCR, so it is asked for by name and not part of the default.
Feature = Literal["faces", "people", "codes", "colors", "quality", "text"]
ALL_FEATURES: list[Feature] = ["faces", "people", "codes", "colors", "quality"]


class VisionRequest(TaskRequest):
    image: Image
    features: list[Feature] = Field(default_factory=lambda: list(ALL_FEATURES), min_length=1)


class Detection(Strict):
    box: Box
    confidence: float | None = None


class Code(Strict):
    type: str
    data: str
    box: Box


class Color(Strict):
    hex: str = Field(pattern=r"^#[0-9a-f]{6}$")
    ratio: float = Field(ge=0, le=1)


class Quality(Strict):
    sharpness: float = Field(ge=0, description="variance of the Laplacian")
    brightness: float = Field(ge=0, le=255)
    contrast: float = Field(ge=0)


class VisionOutput(Strict):
    """Features that were not asked for are null."""

    width: int = Field(ge=0)
    height: int = Field(ge=0)
    faces: list[Detection] | None = None
    people: list[Detection] | None = None
    codes: list[Code] | None = None
    colors: list[Color] | None = None
    quality: Quality | None = None
    has_text: bool | None = None
