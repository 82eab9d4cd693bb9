"""Image analysis on images drawn with OpenCV: codes decode, colours and quality measure what was drawn."""

from __future__ import annotations

import threading

import cv2
import numpy as np
import pytest

from stepper.providers.engines import vision
from stepper.providers.engines.steps import Box, Frame
from stepper.providers.engines.vision import (
    analyse_image,
    detect_faces,
    detect_people,
    detectors,
    dominant_colors,
    has_text,
    looks_like_text,
    measure_quality,
    read_codes,
)
from stepper.schemas.vision import Color, Detection
from tests.unit.providers.engines.test_steps import overlap, recording, require_ocr

WIDTH, HEIGHT = 640, 400

# EAN-13 bar patterns: L and G code the left half (G by parity of the first digit), R the right half.
EAN_L = ["0001101", "0011001", "0010011", "0111101", "0100011", "0110001", "0101111", "0111011", "0110111", "0001011"]
EAN_R = ["".join("1" if bit == "0" else "0" for bit in code) for code in EAN_L]
EAN_G = [code[::-1] for code in EAN_R]
EAN_PARITY = ["LLLLLL", "LLGLGG", "LLGGLG", "LLGGGL", "LGLLGG", "LGGLLG", "LGGGLL", "LGLGLG", "LGLGGL", "LGGLGL"]


def blank(colour: tuple[int, int, int] = (255, 255, 255)) -> Frame:
    return np.full((HEIGHT, WIDTH, 3), colour, np.uint8)


def paste(canvas: Frame, gray: Frame, x: int, y: int) -> Box:
    height, width = gray.shape[:2]
    canvas[y : y + height, x : x + width] = gray[..., None]
    return (x, y, width, height)


def qr_code(text: str, module_px: int = 8) -> Frame:
    code = cv2.QRCodeEncoder.create().encode(text)  # with its quiet zone
    return cv2.resize(code, None, fx=module_px, fy=module_px, interpolation=cv2.INTER_NEAREST)


def ean13(first_twelve: str, module_px: int = 2, height_px: int = 80) -> tuple[str, Frame]:
    """The full EAN-13 number (with its check digit) and its bars, quiet zones included."""
    check = (10 - sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(first_twelve)) % 10) % 10
    digits = f"{first_twelve}{check}"
    parity = EAN_PARITY[int(digits[0])]
    left = "".join((EAN_L if p == "L" else EAN_G)[int(d)] for d, p in zip(digits[1:7], parity, strict=True))
    right = "".join(EAN_R[int(d)] for d in digits[7:])
    bits = "0" * 11 + "101" + left + "01010" + right + "101" + "0" * 11
    row = np.array([0 if bit == "1" else 255 for bit in bits], np.uint8).repeat(module_px)
    return digits, np.tile(row, (height_px, 1))


def printed_text() -> Frame:
    image = blank()
    cv2.putText(image, "Invoice total", (40, 180), cv2.FONT_HERSHEY_SIMPLEX, 2, (0, 0, 0), 4, cv2.LINE_AA)
    cv2.putText(image, "Due 12 March", (40, 280), cv2.FONT_HERSHEY_SIMPLEX, 1.5, (40, 40, 40), 3, cv2.LINE_AA)
    return image


def gradient() -> Frame:
    ramp = np.tile(np.linspace(0, 255, WIDTH, dtype=np.uint8), (HEIGHT, 1))
    return cv2.merge([ramp, ramp, ramp])


def shapes() -> Frame:
    image = blank((230, 230, 230))
    cv2.rectangle(image, (50, 50), (300, 120), (30, 120, 200), cv2.FILLED)
    cv2.circle(image, (450, 250), 80, (20, 20, 20), cv2.FILLED)
    cv2.line(image, (0, 350), (640, 360), (0, 0, 0), 3)
    return image


def halves() -> Frame:
    image = blank()
    image[:, : WIDTH // 2] = (0, 0, 255)  # BGR: red on the left
    image[:, WIDTH // 2 :] = (255, 0, 0)  # blue on the right
    return image


def face_and_figure() -> Frame:
    """A cartoon face and a stick figure: what the detectors make of it is not asserted, only its shape."""
    image = blank((200, 220, 230))
    cv2.circle(image, (160, 160), 80, (150, 180, 220), cv2.FILLED)
    for eye_x in (130, 190):
        cv2.circle(image, (eye_x, 140), 10, (40, 40, 40), cv2.FILLED)
    cv2.ellipse(image, (160, 195), (35, 15), 0, 0, 180, (40, 40, 120), 4)
    cv2.circle(image, (480, 110), 30, (60, 60, 60), cv2.FILLED)
    cv2.line(image, (480, 140), (480, 260), (60, 60, 60), 12)
    for end in ((430, 210), (530, 210), (440, 370), (520, 370)):
        cv2.line(image, (480, 200 if end[1] == 210 else 260), end, (60, 60, 60), 12)
    return image


def test_qr_code_is_decoded_where_it_was_drawn() -> None:
    image = blank()
    drawn = paste(image, qr_code("stepper"), 200, 100)
    (code,) = read_codes(image)
    assert (code.type, code.data) == ("QR_CODE", "stepper")
    assert overlap(code.box, drawn) == 1 and overlap(drawn, code.box) > 0.6  # the symbol, not its quiet zone


def test_several_codes_and_a_barcode() -> None:
    if detectors().barcodes is None:
        pytest.skip(f"OpenCV {cv2.__version__} has no barcode module")
    image = blank()
    paste(image, qr_code("first", 5), 20, 20)
    paste(image, qr_code("second", 5), 20, 200)
    digits, bars = ean13("400638133393")
    drawn = paste(image, bars, 250, 150)
    # As a camera would see it: OpenCV's barcode detector misses perfectly sharp bars at most positions.
    codes = read_codes(cv2.GaussianBlur(image, (3, 3), 0))
    assert sorted((c.type, c.data) for c in codes) == [("EAN_13", digits), ("QR_CODE", "first"), ("QR_CODE", "second")]
    (barcode,) = (c for c in codes if c.type == "EAN_13")
    assert overlap(barcode.box, drawn) > 0.9


def test_no_codes_in_an_image_without_any() -> None:
    assert read_codes(shapes()) == []


def test_dominant_colours_of_two_halves() -> None:
    colours = dominant_colors(halves())
    assert {c.hex for c in colours[:2]} == {"#ff0000", "#0000ff"}
    assert all(c.ratio == pytest.approx(0.5, abs=0.02) for c in colours[:2])
    assert sum(c.ratio for c in colours) == pytest.approx(1, abs=0.001)


def test_dominant_colours_are_sorted_bounded_and_repeatable() -> None:
    frames, _ = recording()
    colours = dominant_colors(frames[0])
    assert 1 <= len(colours) <= 5
    assert [c.ratio for c in colours] == sorted((c.ratio for c in colours), reverse=True)
    assert sum(c.ratio for c in colours) == pytest.approx(1, abs=0.001)
    page = colours[0]  # white, averaged with a little anti-aliasing
    assert all(int(page.hex[i : i + 2], 16) >= 250 for i in (1, 3, 5)) and page.ratio > 0.6
    assert all(len(c.hex) == 7 and c.hex == c.hex.lower() for c in colours)
    assert dominant_colors(frames[0]) == colours  # no random start: the same image, the same answer
    assert dominant_colors(blank((10, 20, 30))) == [Color(hex="#1e140a", ratio=1.0)]


def test_quality_measures() -> None:
    frames, _ = recording()
    sharp = measure_quality(frames[0])
    blurred = measure_quality(cv2.GaussianBlur(frames[0], (9, 9), 3))
    assert blurred.sharpness < sharp.sharpness / 10
    assert blurred.brightness == pytest.approx(sharp.brightness, abs=1)
    white, black = measure_quality(blank()), measure_quality(blank((0, 0, 0)))
    assert (white.brightness, white.contrast, white.sharpness) == (255, 0, 0)
    assert (black.brightness, black.contrast) == (0, 0)
    black_and_white = blank()
    black_and_white[:, : WIDTH // 2] = 0
    assert measure_quality(black_and_white).contrast == 127.5


def test_has_text_with_ocr() -> None:
    require_ocr()
    assert has_text(printed_text()) is True
    assert has_text(recording()[0][0]) is True
    assert has_text(gradient()) is False
    assert has_text(blank()) is False  # tesserocr raises on a page without words: read as none
    assert has_text(shapes()) is False


def test_has_text_without_ocr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vision, "best_engine", lambda: None)
    assert vision.reader("eng") is None
    assert has_text(printed_text()) is True
    for image in (gradient(), blank(), shapes(), halves(), face_and_figure()):
        assert has_text(image) is False
    qr = blank()
    paste(qr, qr_code("stepper"), 200, 100)
    assert looks_like_text(qr) is False


def test_faces_and_people_give_detections() -> None:
    image = face_and_figure()
    faces, people = detect_faces(image), detect_people(image)
    assert isinstance(faces, list) and all(isinstance(d, Detection) for d in faces)
    assert isinstance(people, list) and all(isinstance(d, Detection) for d in people)
    for detection in faces + people:
        x, y, w, h = detection.box
        assert x >= 0 and y >= 0 and w > 0 and h > 0 and x + w <= WIDTH + 1 and y + h <= HEIGHT + 1
    assert detect_people(image[:100, :60]) == []  # smaller than HOG's window
    large = cv2.resize(image, (2560, 1600))  # analysed on a smaller copy; boxes come back in its pixels
    assert all(d.box[2] > 0 for d in detect_faces(large) + detect_people(large))


def test_analyse_image_runs_only_what_was_asked() -> None:
    image = blank()
    paste(image, qr_code("stepper"), 200, 100)
    only_codes = analyse_image(image, ["codes"])
    assert (only_codes.width, only_codes.height) == (WIDTH, HEIGHT)
    assert only_codes.codes is not None and [(c.type, c.data) for c in only_codes.codes] == [("QR_CODE", "stepper")]
    others = (only_codes.faces, only_codes.people, only_codes.colors, only_codes.quality, only_codes.has_text)
    assert all(value is None for value in others)
    everything = analyse_image(image, ["faces", "people", "codes", "colors", "quality", "text"])
    assert everything.faces == [] and everything.people == [] and everything.quality is not None
    assert everything.colors is not None and everything.has_text is not None


def test_detectors_are_made_per_thread_and_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    mine = detectors()
    assert detectors() is mine and mine.qr_codes is mine.qr_codes  # built once, on first use
    theirs: list[vision.Detectors] = []
    thread = threading.Thread(target=lambda: theirs.append(detectors()))
    thread.start()
    thread.join()
    assert theirs[0] is not mine
    monkeypatch.setattr("stepper.providers.engines.vision.os.getpid", lambda: mine.pid + 1)  # as in a forked child
    assert detectors() is not mine
