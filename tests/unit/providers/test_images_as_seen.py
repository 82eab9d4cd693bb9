"""Real-world images through the providers: OCR reads the phrase from every mode and format, vision sees text
on a transparent PNG, steps see one picture whatever its encoding, and tall pages and tiny crops read.
Real tesseract and OpenCV; the images come from tests.support.image_corpus."""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path

import pytest

from stepper.errors import InvalidRequest
from stepper.providers.opencv import OpenCvProvider
from stepper.providers.tesseract import TesseractProvider
from stepper.schemas import OcrRequest, StepsRequest, VisionRequest
from stepper.settings import ProviderSettings
from tests.support import image_corpus as corpus
from tests.unit.providers.engines.test_steps import require_ocr

SetArtifacts = Callable[[int], Path]


def b64(data: bytes) -> dict[str, str]:
    return {"b64": base64.b64encode(data).decode()}


def ocr(*samples: corpus.Sample) -> list[str]:
    require_ocr()
    provider = TesseractProvider(
        ProviderSettings.model_validate({"name": "tesseract", "class": "stepper.providers.tesseract:TesseractProvider"})
    )
    request = OcrRequest.model_validate({"images": [b64(sample.data) for sample in samples]})
    return [page.text for page in provider.read(request, "tesseract").output.pages]


def opencv() -> OpenCvProvider:
    return OpenCvProvider(
        ProviderSettings.model_validate({"name": "opencv", "class": "stepper.providers.opencv:OpenCvProvider"})
    )


@pytest.mark.parametrize("sample", corpus.phrase_samples(), ids=lambda sample: sample.name)
def test_ocr_reads_the_phrase_from_every_mode_and_format(sample: corpus.Sample) -> None:
    assert ocr(sample) == [corpus.PHRASE]


def test_ocr_reads_the_top_and_the_bottom_of_a_very_tall_page() -> None:
    sample = corpus.tall_page()
    assert ocr(sample) == ["\n\n".join(sample.expected)]


def test_ocr_reads_the_word_in_a_tiny_crop() -> None:
    assert ocr(corpus.tiny_crop()) == ["TOTAL"]


def test_heic_reads_or_is_refused_saying_to_convert() -> None:
    data = corpus.heic()
    if data is not None:
        assert ocr(corpus.Sample("HEIC", data)) == [corpus.PHRASE]
        return
    with pytest.raises(InvalidRequest, match=r"images\.0: HEIC/HEIF images are not supported.*PNG or JPEG"):
        ocr(corpus.Sample("HEIC", corpus.heic_header()))


@pytest.mark.parametrize("make", [corpus.transparent_png, corpus.light_on_transparent_png])
def test_vision_sees_text_on_a_transparent_png(make: Callable[[], bytes]) -> None:
    require_ocr()
    request = VisionRequest.model_validate({"image": b64(make()), "features": ["text"]})
    assert opencv().analyse(request, "opencv").output.has_text is True


def test_steps_see_one_picture_whatever_its_mode_and_format(artifact_dir: SetArtifacts) -> None:
    """Frames of the same screen in every encoding: no step, so each decodes to the same picture. Left out: light
    text on transparency (it shows on black, as a person sees it: another picture) and 1-bit (thresholding
    drops the glyphs' antialiased edges when it is drawn)."""
    other_pictures = ("light text", "1-bit")
    frames = [
        sample.data for sample in corpus.phrase_samples() if not any(other in sample.name for other in other_pictures)
    ]
    request = StepsRequest.model_validate({"frames": [b64(frame) for frame in frames]})
    assert opencv().detect_steps(request, "opencv").output.steps == []


def test_an_image_too_small_for_a_glyph_is_refused_by_ocr_and_has_no_text_for_vision() -> None:
    speck = corpus.Sample("4x4", corpus.encode(corpus.page().resize((4, 4)), "PNG"), ())
    with pytest.raises(InvalidRequest, match="4x4 pixels; reading text needs at least 6 pixels a side"):
        ocr(speck)
    request = VisionRequest.model_validate({"image": b64(speck.data), "features": ["text"]})
    assert opencv().analyse(request, "opencv").output.has_text is False


def test_a_blank_page_is_a_success_with_no_text() -> None:
    blank = corpus.Sample("blank", corpus.encode(corpus.page(text=""), "PNG"), ())
    assert ocr(blank) == [""]
