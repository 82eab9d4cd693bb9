"""``stepper.ocr``: text, confidence and word boxes of each image."""

from __future__ import annotations

from pydantic import Field

from stepper.schemas.common import Box, Image, Strict


class OcrRequest(Strict):
    images: list[Image] = Field(min_length=1, max_length=100)
    lang: str = Field(default="eng", pattern=r"^[A-Za-z_]{3,}(\+[A-Za-z_]{3,})*$", description="tesseract languages")
    psm: int | None = Field(default=None, ge=0, le=13, description="tesseract page segmentation mode")


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
