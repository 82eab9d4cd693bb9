"""Tesseract's limits handled inside recognise(): tall pages in strips, wide ones downscaled, tiny crops
enlarged, too few pixels refused, empty pages empty. Real tesseract, through both engines."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from stepper.errors import InvalidRequest
from stepper.providers.engines.ocr import (
    TESSERACT_MAX_SIDE_PX,
    OcrEngine,
    PytesseractEngine,
    TesserocrEngine,
    tessdata_dir,
)
from stepper.providers.media.images import decode_image
from stepper.settings import ImageSettings
from tests.support import image_corpus as corpus
from tests.support.binaries import require_binary

SETTINGS = ImageSettings()


def engines() -> list[pytest.ParameterSet]:
    def tesserocr_missing() -> bool:
        try:
            import tesserocr  # noqa: F401
        except ImportError:
            return True
        return tessdata_dir() is None

    return [
        pytest.param(TesserocrEngine, marks=pytest.mark.skipif(tesserocr_missing(), reason="tesserocr not usable")),
        pytest.param(PytesseractEngine, id="PytesseractEngine"),
    ]


@pytest.fixture(params=engines(), ids=lambda kind: kind.__name__)
def engine(request: pytest.FixtureRequest) -> OcrEngine:
    require_binary("tesseract", "tesseract-ocr")
    made: OcrEngine = request.param()
    return made


def gray(sample: corpus.Sample) -> np.ndarray[Any, Any]:
    return decode_image(sample.data, SETTINGS, grayscale=True)


def test_a_page_taller_than_tesseract_accepts_reads_top_and_bottom_once(engine: OcrEngine) -> None:
    sample = corpus.tall_page()
    assert sample.size[1] > TESSERACT_MAX_SIDE_PX
    page = engine.recognise(gray(sample), "eng", None, None)
    assert page.text == "INVOICE 2024\n\nTOTAL 99"
    total = next(word for word in page.words if word.text == "TOTAL")
    assert sample.size[1] - 100 < total.box[1] < sample.size[1]  # boxes in the whole page's coordinates


def test_a_line_across_a_strip_edge_is_read_once(engine: OcrEngine) -> None:
    pixels = np.full((TESSERACT_MAX_SIDE_PX + 1000, 400), 255, np.uint8)
    line = np.asarray(corpus.page())  # the phrase at rows 30-60 of a 100-row band
    pixels[8192 - 300 - 50 : 8192 - 300 + 50] = line  # straddles the first strips' overlap (7680-8192)
    page = engine.recognise(pixels, "eng", None, None)
    assert page.text == "INVOICE 2024"


def test_a_page_wider_than_tesseract_accepts_is_downscaled(engine: OcrEngine) -> None:
    pixels = np.full((100, TESSERACT_MAX_SIDE_PX + 3000), 255, np.uint8)
    pixels[:, 30000:30400] = np.asarray(corpus.page())
    page = engine.recognise(pixels, "eng", None, None)
    assert page.text == "INVOICE 2024"
    assert 29900 < page.words[0].box[0] < 30200


def test_a_tiny_crop_is_enlarged_until_its_word_reads(engine: OcrEngine) -> None:
    sample = corpus.tiny_crop()
    page = engine.recognise(gray(sample), "eng", None, None)
    assert page.text == "TOTAL"
    x, y, w, h = page.words[0].box
    assert x + w <= 60 + 1 and y + h <= 12 + 1  # mapped back onto the 60x12 crop


@pytest.mark.parametrize("shape", [(5, 400), (400, 2), (0, 0)])
def test_too_few_pixels_are_the_callers_error_naming_size_and_limit(engine: OcrEngine, shape: tuple[int, int]) -> None:
    with pytest.raises(InvalidRequest, match=rf"{shape[1]}x{shape[0]} pixels; reading text needs at least 6"):
        engine.recognise(np.full(shape, 255, np.uint8), "eng", None, None)


@pytest.mark.parametrize("shape", [(100, 400), (12, 60), (40_000, 600)])
def test_an_empty_page_reads_as_no_text(engine: OcrEngine, shape: tuple[int, int]) -> None:
    page = engine.recognise(np.full(shape, 255, np.uint8), "eng", None, None)
    assert (page.text, page.words, page.confidence) == ("", [], 0.0)


def test_colour_pages_keep_their_channels_through_the_margin(engine: OcrEngine) -> None:
    rgb = np.repeat(gray(corpus.tiny_crop())[:, :, None], 3, axis=2)
    assert engine.recognise(rgb, "eng", None, None).text == "TOTAL"
