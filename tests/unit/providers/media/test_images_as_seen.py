"""Decoding gives what a person sees, whatever the mode and format: the corpus of tests.support.image_corpus."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest
from PIL import Image

from stepper.errors import InvalidRequest
from stepper.providers.media import images
from stepper.providers.media.images import decode_image, visible_pixels
from stepper.settings import ImageSettings
from tests.support import image_corpus as corpus

SETTINGS = ImageSettings()
REFERENCE = np.asarray(corpus.page(), dtype=np.int16)  # the phrase as drawn, gray, before any encoding
#: Mean absolute difference (0-255) allowed from the reference: JPEG's and the 1-bit threshold's losses.
CLOSE = 6.0


@pytest.mark.parametrize("sample", corpus.phrase_samples(), ids=lambda sample: sample.name)
def test_every_mode_and_format_decodes_to_the_picture_drawn(sample: corpus.Sample) -> None:
    gray = decode_image(sample.data, SETTINGS, grayscale=True)
    bgr = decode_image(sample.data, SETTINGS)
    assert gray.dtype == bgr.dtype == np.uint8
    assert gray.shape == REFERENCE.shape and bgr.shape == (*REFERENCE.shape, 3)
    if "light text" in sample.name:  # white glyphs on transparency: composited onto black, so the negative
        assert np.abs((255 - gray.astype(np.int16)) - REFERENCE).mean() < CLOSE
    else:
        assert np.abs(gray.astype(np.int16) - REFERENCE).mean() < CLOSE


def test_dark_text_on_transparency_is_dark_on_white() -> None:
    """The reported bug: RGBA with background (0, 0, 0, 0) decoded black on black."""
    bgr = decode_image(corpus.transparent_png(), SETTINGS)
    assert (bgr[0, 0] == 255).all()  # the transparent corner shows white paper
    assert bgr.min() == 0  # and the glyphs their black ink


def test_exif_orientation_turns_the_photo_upright() -> None:
    data = corpus.exif_rotated_jpeg()
    with Image.open(io.BytesIO(data)) as stored:
        assert stored.size == (100, 400)  # stored on its side
    assert decode_image(data, SETTINGS).shape == (100, 400, 3)


def test_sixteen_bits_are_scaled_not_clipped() -> None:
    gray = decode_image(corpus.png_16_bit(), SETTINGS, grayscale=True)
    assert gray.min() == 0 and gray.max() == 255  # clipping at 255 would have made the ink white too


def test_one_page_of_a_document_decodes_the_same_way() -> None:
    """visible_pixels serves pages of multi-page documents: here the second page of a TIFF, LA with alpha."""
    first = corpus.page().convert("RGB")
    second = Image.merge("LA", (Image.new("L", first.size, 0), Image.eval(corpus.page(), lambda v: 255 - v)))
    buffer = io.BytesIO()
    first.save(buffer, "TIFF", save_all=True, append_images=[second])
    with Image.open(buffer) as document:
        document.seek(1)
        assert document.mode == "LA"
        gray = visible_pixels(document, grayscale=True)
    assert np.abs(gray.astype(np.int16) - REFERENCE).mean() < CLOSE


def test_the_header_is_checked_before_decoding() -> None:
    with pytest.raises(InvalidRequest, match="400x100 = 40,000 pixels; the limit is 1,000"):
        decode_image(corpus.transparent_png(), ImageSettings(max_pixels=1000))
    data = corpus.transparent_png()
    with pytest.raises(InvalidRequest, match="PNG image is damaged"):
        decode_image(data[: len(data) // 2], SETTINGS)


def test_heic_without_pillow_heif_is_refused_saying_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(images, "heif_available", lambda: False)
    with pytest.raises(InvalidRequest, match=r"HEIC/HEIF images are not supported.*convert the image to PNG or JPEG"):
        decode_image(corpus.heic_header(), SETTINGS)


def test_heic_decodes_when_pillow_heif_is_installed() -> None:
    data = corpus.heic()
    if data is None:  # the dev extra installs it: skip locally, fail in CI where a skip would hide it
        message = "pillow-heif is not installed (pip install -e '.[dev]' brings it)"
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(message)
        pytest.skip(message)
    gray = decode_image(data, SETTINGS, grayscale=True)
    assert np.abs(gray.astype(np.int16) - REFERENCE).mean() < CLOSE
