"""``stepper.ocr``: text, confidence and word boxes of each image, and of each page of a PDF or TIFF."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from stepper.schemas.common import Box, Image, Strict, TaskRequest

Preprocessing = Literal["grayscale", "upscale", "binarize"]
#: Where a page's text came from: the PDF's own text layer, or tesseract reading its pixels.
PageSource = Literal["text_layer", "ocr"]
#: use: a PDF page's text layer, where it has one, is its text; ignore: every page is rendered and read.
TextLayer = Literal["use", "ignore"]

#: "1-3,5,9-": pages and ranges, 1-based, a range open at its end running to the last page.
PAGES_PATTERN = r"^\s*\d+\s*(-\s*\d*\s*)?(,\s*\d+\s*(-\s*\d*\s*)?)*$"


class OcrRequest(TaskRequest):
    """``images`` entries may be images, PDFs or TIFFs (told apart by their first bytes); a PDF or TIFF gives
    one output page per page read. ``dpi``, ``pages`` and ``text_layer`` apply to documents only."""

    images: list[Image] = Field(min_length=1, max_length=100)
    lang: str = Field(default="eng", pattern=r"^[A-Za-z_]{3,}(\+[A-Za-z_]{3,})*$", description="tesseract languages")
    psm: int | None = Field(default=None, ge=0, le=13, description="tesseract page segmentation mode")
    oem: int | None = Field(default=None, ge=0, le=3, description="tesseract OCR engine mode")
    preprocess: list[Preprocessing] = Field(
        default_factory=list, description="grayscale; upscale small images; binarize (Otsu) before reading"
    )
    dpi: int | None = Field(
        default=None,
        ge=50,
        le=1200,
        description="dots per inch PDF pages are rendered at; default and upper limit: stepper_documents "
        "default_dpi (300) and max_dpi (600)",
    )
    pages: str | None = Field(
        default=None,
        max_length=200,
        pattern=PAGES_PATTERN,
        description='pages of each document to read, 1-based: "1-3,5,9-" (9- runs to the last page); default all',
    )
    text_layer: TextLayer = Field(
        default="use",
        description="use: a PDF page with a text layer gives that text, unrendered; ignore: render and OCR every page",
    )

    @field_validator("pages")
    @classmethod
    def _ranges_ascend(cls, value: str | None) -> str | None:
        if value is not None:
            parse_pages(value)
        return value


def parse_pages(spec: str) -> tuple[tuple[int, int | None], ...]:
    """``"1-3,5,9-"`` as ``((1, 3), (5, 5), (9, None))``; ValueError naming a page 0 or a range that descends."""
    ranges: list[tuple[int, int | None]] = []
    for part in spec.split(","):
        first, dash, last = (piece.strip() for piece in part.partition("-"))
        start = int(first)
        end = (int(last) if last else None) if dash else start
        if start < 1:
            raise ValueError(f"pages are numbered from 1, not {start} ({part.strip()!r})")
        if end is not None and end < start:
            raise ValueError(f"the range {part.strip()!r} runs backwards; write {end}-{start}")
        ranges.append((start, end))
    return tuple(ranges)


def select_pages(spec: str | None, count: int) -> list[int]:
    """The 1-based page numbers ``spec`` selects from a document of ``count`` pages, ascending, each once;
    ValueError naming a page the document does not have."""
    if spec is None:
        return list(range(1, count + 1))
    chosen: set[int] = set()
    for start, end in parse_pages(spec):
        if start > count or (end is not None and end > count):
            raise ValueError(f"pages {spec!r} asks for page {max(start, end or 0)} of a {count}-page document")
        chosen.update(range(start, (count if end is None else end) + 1))
    return sorted(chosen)


class Word(Strict):
    text: str
    confidence: float = Field(ge=0, le=100)
    box: Box


class Page(Strict):
    """One page read. Boxes are pixels of the page as rendered at ``dpi`` (a document page) or of the image."""

    text: str
    confidence: float = Field(ge=0, le=100, description="mean word confidence; 100 for a text layer")
    words: list[Word]
    image: int | None = Field(default=None, ge=0, description="index of the request's images entry it came from")
    page: int = Field(default=1, ge=1, description="page number in its document, 1-based; 1 for an image")
    source: PageSource = "ocr"
    dpi: int | None = Field(default=None, ge=1, description="dots per inch of a PDF page's pixels and boxes")
    note: str | None = Field(default=None, description="what was done differently from the request, and why")


class OcrOutput(Strict):
    pages: list[Page]
