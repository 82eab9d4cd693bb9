"""OCR of pages made like real scans, with the real tesseract and stepper_ocr's default preparation: a tilted
page and a low-resolution page read their words, and word boxes come back on the page as sent."""

from __future__ import annotations

import base64
import io

import pytest
from PIL import Image

from stepper.config import current_settings
from stepper.providers import tesseract
from stepper.providers.tesseract import TesseractProvider
from stepper.schemas import OcrOutput, OcrRequest
from stepper.settings import OcrSettings, ProviderSettings
from tests.support.binaries import require_binary
from tests.support.scans import LINES, MARKED, marked_box, shadowed, shrunk, text_page, tilted


@pytest.fixture(autouse=True)
def _tesseract() -> None:
    require_binary("tesseract", "tesseract-ocr")


def read(image: Image.Image) -> OcrOutput:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    provider = TesseractProvider(ProviderSettings.model_validate({"name": "tesseract", "class": "x.y:Z"}))
    request = OcrRequest.model_validate({"images": [{"b64": base64.b64encode(buffer.getvalue()).decode()}]})
    return provider.read(request, "tesseract").output


def words_read(output: OcrOutput) -> set[str]:
    return {word.text.strip(".,") for page in output.pages for word in page.words}


def expected_words() -> set[str]:
    return {word for line in LINES for word in line.split()}


@pytest.mark.parametrize("degrees", [-6.0, 4.0])
def test_a_tilted_page_reads_its_words(degrees: float) -> None:
    found = words_read(read(tilted(text_page(), degrees)))
    assert len(expected_words() & found) >= 0.9 * len(expected_words())


def test_a_low_resolution_page_reads_its_words() -> None:
    found = words_read(read(shrunk(text_page(), 0.25)))  # glyphs of about 6 px: 13 of 20 words unprepared
    assert len(expected_words() & found) >= 0.9 * len(expected_words())


def test_word_boxes_of_a_straightened_page_are_on_the_page_as_sent() -> None:
    page = tilted(text_page(), 5.0)
    (marked,) = [word for word in read(page).pages[0].words if word.text == MARKED]
    x, y, w, h = marked_box(page)
    bx, by, bw, bh = marked.box
    overlap_w = min(x + w, bx + bw) - max(x, bx)
    overlap_h = min(y + h, by + bh) - max(y, by)
    assert overlap_w > 0.8 * w and overlap_h > 0.8 * h
    assert bx + bw <= page.width and by + bh <= page.height


def test_adaptive_binarisation_when_turned_on_reads_a_shadowed_page(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = current_settings().model_copy(update={"ocr": OcrSettings(adaptive_binarisation=True)})
    monkeypatch.setattr(tesseract, "current_settings", lambda: settings)
    found = words_read(read(shadowed(text_page())))
    assert len(expected_words() & found) >= 0.9 * len(expected_words())
