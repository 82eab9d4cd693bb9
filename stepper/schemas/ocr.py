"""``stepper.ocr``: text, confidence and word boxes of each image."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from stepper.schemas.common import Box, Image, Strict, TaskRequest

Preprocessing = Literal["grayscale", "upscale", "binarize"]


class OcrRequest(TaskRequest):
    images: list[Image] = Field(min_length=1, max_length=100)
    lang: str = Field(default="eng", pattern=r"^[A-Za-z_]{3,}(\+[A-Za-z_]{3,})*$", description="tesseract languages")
    psm: int | None = Field(default=None, ge=0, le=13, description="tesseract page segmentation mode")
    oem: int | None = Field(default=None, ge=0, le=3, description="tesseract OCR engine mode")
    preprocess: list[Preprocessing] = Field(
        default_factory=list, description="grayscale; upscale small images; binarize (Otsu) before reading"
    )


class Word(Strict):
    text: str
    confidence: float = Field(ge=0, le=100)
    box: Box


class Page(Strict):
    text: str
    confidence: float = Field(ge=0, le=100, description="mean word confidence")
    words: list[Word]


class OcrOutput(Strict):
    pages: list[Page]
