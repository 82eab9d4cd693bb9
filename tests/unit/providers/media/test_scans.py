"""Preparing scanned pages: the lean is found and undone, small glyphs are measured and enlarged, adaptive
binarisation evens out a shadow, and boxes found on the prepared page land on the page as sent."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image
from pydantic import ValidationError

from stepper.providers.media.scans import (
    binarised,
    box_on_original,
    glyph_height_px,
    gray_of,
    prepare,
    rotated,
    skew_angle,
)
from stepper.settings import OcrSettings
from tests.support.scans import marked_box, shadowed, shrunk, text_page, tilted

#: Found angles are within this of the true one: a 1300 px line leaning 0.3 degrees rises 7 px end to end.
ANGLE_TOLERANCE_DEG = 0.3


def gray(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("L"))


@pytest.mark.parametrize("degrees", [-7.0, -2.5, 1.2, 4.0, 9.0])
def test_the_lean_of_a_tilted_page_is_found(degrees: float) -> None:
    # PIL turns counter-clockwise by degrees; straightening it back is a turn by -degrees.
    assert skew_angle(gray(tilted(text_page(), degrees)), 10.0) == pytest.approx(-degrees, abs=ANGLE_TOLERANCE_DEG)


def test_a_straight_page_and_a_blank_page_lean_nowhere() -> None:
    assert skew_angle(gray(text_page()), 10.0) == pytest.approx(0.0, abs=ANGLE_TOLERANCE_DEG)
    assert skew_angle(np.full((400, 600), 255, np.uint8), 10.0) == 0.0


def test_a_lean_beyond_the_search_is_not_reported_as_a_smaller_one() -> None:
    found = skew_angle(gray(tilted(text_page(), 4.0)), 2.0)
    assert -2.0 <= found <= 2.0  # the search stays within its bound


def test_prepare_straightens_a_tilted_page_within_the_tolerance() -> None:
    page = np.asarray(tilted(text_page(), 5.0))[:, :, ::-1].copy()  # BGR, as decoding gives
    prepared = prepare(page, OcrSettings())
    assert prepared.skew_deg == pytest.approx(-5.0, abs=ANGLE_TOLERANCE_DEG)
    assert skew_angle(gray_of(prepared.pixels), 10.0) == pytest.approx(0.0, abs=ANGLE_TOLERANCE_DEG)
    assert prepared.pixels.ndim == 3  # colour is kept unless binarised


def test_a_small_lean_and_a_switched_off_deskew_leave_the_page_alone() -> None:
    page = np.asarray(tilted(text_page(), 0.1).convert("L"))
    assert prepare(page, OcrSettings()).skew_deg == 0.0
    leaning = np.asarray(tilted(text_page(), 5.0).convert("L"))
    untouched = prepare(leaning, OcrSettings(deskew=False))
    assert untouched.skew_deg == 0.0 and untouched.pixels is leaning


def test_rotated_keeps_every_corner_and_fills_with_white() -> None:
    page = np.zeros((100, 200), np.uint8)
    turned, matrix = rotated(page, 30.0)
    assert turned.shape[0] > 100 and turned.shape[1] > 200
    assert turned[0, 0] == 255  # a new corner is paper
    corners = cv2.transform(np.array([[[0, 0]], [[199, 0]], [[0, 99]], [[199, 99]]], np.float64), matrix)
    assert (corners >= -1).all() and (corners[:, 0, 0] <= turned.shape[1]).all()


def test_glyph_height_follows_the_size_of_the_text() -> None:
    full = glyph_height_px(gray(text_page(size_px=32)))
    third = glyph_height_px(gray(shrunk(text_page(size_px=32), 1 / 3)))
    assert 15 <= full <= 40
    assert third == pytest.approx(full / 3, rel=0.25)
    assert glyph_height_px(np.full((100, 100), 255, np.uint8)) == 0.0


def test_small_glyphs_are_enlarged_towards_the_target_and_others_are_not() -> None:
    settings = OcrSettings()
    small = gray(shrunk(text_page(), 1 / 4))
    prepared = prepare(small, settings)
    assert prepared.scale > 2
    assert glyph_height_px(prepared.pixels) == pytest.approx(settings.glyph_target_px, rel=0.25)
    assert prepare(gray(text_page()), settings).scale == 1.0
    assert prepare(small, OcrSettings(enlarge_glyphs_below_px=0)).scale == 1.0


def test_adaptive_binarisation_keeps_ink_and_paper_apart_under_a_shadow() -> None:
    page = shadowed(text_page())
    pixels = gray(page)
    ink_mask = gray(text_page()) < 128
    _, otsu = cv2.threshold(pixels, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    adaptive = binarised(pixels, 31, 15)
    assert set(np.unique(adaptive)) <= {0, 255}
    paper = ~cv2.dilate(ink_mask.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
    # One threshold turns the dark side of the paper black; a threshold per neighbourhood does not.
    assert (otsu[paper] == 0).mean() > 0.2
    assert (adaptive[paper] == 0).mean() < 0.01
    assert (adaptive[ink_mask] == 0).mean() > 0.5


def test_a_box_on_the_prepared_page_maps_back_onto_the_page_as_sent() -> None:
    page = tilted(text_page(), 5.0)
    prepared = prepare(np.asarray(page)[:, :, ::-1].copy(), OcrSettings())
    straight = Image.fromarray(np.ascontiguousarray(prepared.pixels[:, :, ::-1]))
    back = box_on_original(marked_box(straight), prepared.to_prepared, page.size)
    x, y, w, h = marked_box(page)
    bx, by, bw, bh = back
    # The word's box, turned back, holds the word as sent (its corners swing out by the turn, no more).
    assert bx <= x + 2 and by <= y + 2 and bx + bw >= x + w - 2 and by + bh >= y + h - 2
    assert bw * bh < 1.6 * w * h


def test_settings_refuse_an_even_block_and_skew_bounds_out_of_order() -> None:
    with pytest.raises(ValidationError, match="binarisation_block_px must be odd"):
        OcrSettings(binarisation_block_px=30)
    with pytest.raises(ValidationError, match=r"min_skew_deg \(5.0\) must be below max_skew_deg \(2.0\)"):
        OcrSettings(min_skew_deg=5.0, max_skew_deg=2.0)


def test_a_page_too_tall_to_turn_and_a_tiny_crop_are_left_as_they_are() -> None:
    tall = np.full((33_000, 700), 255, np.uint8)
    tall[:300] = gray(tilted(text_page(), 4.0))[:300, :700]
    assert skew_angle(tall, 10.0) != 0.0  # it leans, but turned it would outgrow OpenCV's warp
    prepared = prepare(tall, OcrSettings())
    assert prepared.skew_deg == 0.0 and prepared.pixels is tall
    crop = gray(shrunk(text_page(), 1 / 8))[:40, :200]
    assert prepare(crop, OcrSettings()).pixels is crop
