"""What is in one image, with OpenCV: faces, people, QR codes and barcodes, dominant colours, quality and text.

OpenCV's detectors (Haar cascade, HOG, QR and barcode readers) are built on first use in each thread of each
process, never at import: they take a moment to load, a QRCodeDetector keeps state between calls, so threads
must not share one, and a forked child must not use its parent's. The detectors give no calibrated
confidence, so detections carry none.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Collection
from functools import cached_property
from typing import Any

import cv2
import cv2.data
import numpy as np

from stepper.errors import UnsupportedInput
from stepper.providers.engines.ocr import MIN_SIDE_PX, OcrEngine, best_engine, installed_languages
from stepper.schemas.vision import Code, Color, Detection, Quality, VisionOutput

Pixels = np.ndarray[Any, Any]
Box = tuple[int, int, int, int]

#: Faces are looked for on a copy no larger than this (longest side): the cascade's cost grows with the area.
FACES_MAX_SIDE_PX = 1280
#: HOG is slower still; people smaller than 128 pixels high at this scale are missed.
PEOPLE_MAX_SIDE_PX = 800
#: Dominant colours are clustered on a copy of at most this many pixels a side.
COLORS_SIDE_PX = 64
COLORS_K = 5
#: OCR for ``has_text`` reads a copy no larger than this.
TEXT_MAX_SIDE_PX = 2000
#: A word OCR is surer of than this (0-100) means the image holds text.
TEXT_MIN_CONFIDENCE = 60.0
#: Without OCR: edges stronger than this (0-255) outline glyphs, and a line needs this many glyph outlines.
TEXT_EDGE_DELTA = 60
TEXT_MIN_GLYPHS = 3


def analyse_image(pixels: Pixels, features: Collection[str], lang: str = "eng") -> VisionOutput:
    """BGR pixels analysed for the named features (faces, people, codes, colors, quality, text); the others are None."""
    height, width = pixels.shape[:2]
    return VisionOutput(
        width=width,
        height=height,
        faces=detect_faces(pixels) if "faces" in features else None,
        people=detect_people(pixels) if "people" in features else None,
        codes=read_codes(pixels) if "codes" in features else None,
        colors=dominant_colors(pixels) if "colors" in features else None,
        quality=measure_quality(pixels) if "quality" in features else None,
        has_text=has_text(pixels, lang) if "text" in features else None,
    )


class Detectors:
    """OpenCV's detectors for one thread of one process, each built when first asked for."""

    def __init__(self) -> None:
        self.pid = os.getpid()

    @cached_property
    def faces(self) -> cv2.CascadeClassifier:
        path = os.path.join(cv2.data.haarcascades, "haarcascade_frontalface_default.xml")
        cascade = cv2.CascadeClassifier(path)
        if cascade.empty():
            raise UnsupportedInput(f"OpenCV's face cascade {path} is missing; reinstall opencv-python-headless<5")
        return cascade

    @cached_property
    def people(self) -> cv2.HOGDescriptor:
        hog = cv2.HOGDescriptor()
        hog.setSVMDetector(np.asarray(cv2.HOGDescriptor.getDefaultPeopleDetector(), dtype=np.float32))
        return hog

    @cached_property
    def qr_codes(self) -> cv2.QRCodeDetector:
        return cv2.QRCodeDetector()

    @cached_property
    def barcodes(self) -> cv2.barcode.BarcodeDetector | None:
        """None in OpenCV builds without the barcode module (before 4.8)."""
        module = getattr(cv2, "barcode", None)
        return module.BarcodeDetector() if module is not None else None


_local = threading.local()


def detectors() -> Detectors:
    """This thread's detectors (made again in a forked child, whose thread-locals are copies of its parent's)."""
    current: Detectors | None = getattr(_local, "detectors", None)
    if current is None or current.pid != os.getpid():
        current = _local.detectors = Detectors()
    return current


def detect_faces(pixels: Pixels) -> list[Detection]:
    small, scale = _at_most(_gray(pixels), FACES_MAX_SIDE_PX)
    found = detectors().faces.detectMultiScale(
        cv2.equalizeHist(small), scaleFactor=1.1, minNeighbors=5, minSize=(24, 24)
    )
    return [Detection(box=_scaled(box, scale)) for box in found]


def detect_people(pixels: Pixels) -> list[Detection]:
    small, scale = _at_most(pixels, PEOPLE_MAX_SIDE_PX)
    if small.shape[0] < 128 or small.shape[1] < 64:  # smaller than HOG's detection window
        return []
    found, _ = detectors().people.detectMultiScale(small, winStride=(8, 8), padding=(8, 8), scale=1.05)
    return [Detection(box=_scaled(box, scale)) for box in found]


def read_codes(pixels: Pixels) -> list[Code]:
    """Decoded QR codes (``QR_CODE``) and barcodes (``EAN_13``, ``CODE_128``...); undecodable ones are left out."""
    codes = []
    found, texts, corners, _ = detectors().qr_codes.detectAndDecodeMulti(pixels)
    if found:
        codes += [
            Code(type="QR_CODE", data=text, box=_box_around(quad))
            for text, quad in zip(texts, corners, strict=True)
            if text
        ]
    barcodes = detectors().barcodes
    if barcodes is not None:
        found, texts, kinds, corners = barcodes.detectAndDecodeWithType(pixels)
        if found:
            codes += [
                Code(type=kind, data=text, box=_box_around(quad))
                for text, kind, quad in zip(texts, kinds, corners, strict=True)
                if text
            ]
    return codes


def dominant_colors(pixels: Pixels, k: int = COLORS_K) -> list[Color]:
    """Up to ``k`` colours by k-means on a small copy, most common first, as ``#rrggbb`` and share of pixels.

    The starting centres are picked by k-means++ with a fixed seed, so the same image gives the same answer.
    """
    small, _ = _at_most(pixels, COLORS_SIDE_PX, cv2.INTER_AREA)
    samples = small.reshape(-1, 3).astype(np.float32)
    k = min(k, len(np.unique(samples, axis=0)))
    labels = _kmeans_plus_plus_labels(samples, k)
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 20, 0.5)
    _, labels, centres = cv2.kmeans(samples, k, labels, criteria, 1, cv2.KMEANS_USE_INITIAL_LABELS)
    counts = np.bincount(labels.ravel(), minlength=k)
    shares: dict[str, int] = {}
    for centre, count in zip(centres, counts, strict=True):
        blue, green, red = (round(float(c)) for c in np.clip(centre, 0, 255))
        name = f"#{red:02x}{green:02x}{blue:02x}"
        shares[name] = shares.get(name, 0) + int(count)  # clusters that ended on the same colour are one
    total = len(samples)
    ranked = sorted(shares.items(), key=lambda item: (-item[1], item[0]))
    return [Color(hex=name, ratio=round(count / total, 4)) for name, count in ranked if count]


def _kmeans_plus_plus_labels(samples: Pixels, k: int) -> Pixels:
    rng = np.random.default_rng(0)
    centres = [samples[rng.integers(len(samples))]]
    for _ in range(1, k):
        distances = np.min([np.sum((samples - c) ** 2, axis=1) for c in centres], axis=0)
        weights = distances / distances.sum() if distances.sum() > 0 else None
        centres.append(samples[rng.choice(len(samples), p=weights)])
    nearest = np.argmin([np.sum((samples - c) ** 2, axis=1) for c in centres], axis=0)
    labels: Pixels = nearest.astype(np.int32).reshape(-1, 1)
    return labels


def measure_quality(pixels: Pixels) -> Quality:
    """Sharpness (variance of the Laplacian: low when blurred), brightness (mean gray), contrast (std of gray)."""
    gray = _gray(pixels)
    mean, deviation = cv2.meanStdDev(gray)
    sharpness = float(cv2.Laplacian(gray, cv2.CV_64F).var())
    return Quality(
        sharpness=round(sharpness, 2),
        brightness=round(float(mean[0][0]), 2),
        contrast=round(float(deviation[0][0]), 2),
    )


def reader(lang: str) -> OcrEngine | None:
    """The OCR engine when tesseract is installed with ``lang``, else None."""
    engine = best_engine()
    if engine is None or any(code not in installed_languages() for code in lang.split("+")):
        return None
    return engine


def has_text(pixels: Pixels, lang: str = "eng") -> bool:
    """Whether the image holds text: a word OCR is sure of, or without OCR, lines of glyph-like outlines."""
    engine = reader(lang)
    if engine is None:
        return looks_like_text(pixels)
    small, _ = _at_most(_gray(pixels), TEXT_MAX_SIDE_PX, cv2.INTER_AREA)
    if min(small.shape[:2]) < MIN_SIDE_PX:  # too small to hold a glyph: OCR would refuse the request
        return False
    words = engine.recognise(small, lang, None, None).words
    return any(word.confidence > TEXT_MIN_CONFIDENCE and sum(c.isalnum() for c in word.text) >= 2 for word in words)


def looks_like_text(pixels: Pixels) -> bool:
    """A cheap guess: strong edges that, closed horizontally, form a line holding several separate outlines."""
    gray, _ = _at_most(_gray(pixels), TEXT_MAX_SIDE_PX, cv2.INTER_AREA)
    gradient = cv2.morphologyEx(gray, cv2.MORPH_GRADIENT, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3)))
    edges = np.where(gradient > TEXT_EDGE_DELTA, 255, 0).astype(np.uint8)
    lines = cv2.morphologyEx(edges, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_RECT, (9, 1)))
    contours, _ = cv2.findContours(lines, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    for contour in contours:
        x, y, w, h = cv2.boundingRect(contour)
        if not (8 <= h <= 120 and w >= 2 * h) or cv2.countNonZero(lines[y : y + h, x : x + w]) < 0.45 * w * h:
            continue
        count, _, stats, _ = cv2.connectedComponentsWithStats(edges[y : y + h, x : x + w])
        glyphs = sum(1 for i in range(1, count) if stats[i, cv2.CC_STAT_HEIGHT] >= h / 3)
        if glyphs >= TEXT_MIN_GLYPHS:
            return True
    return False


def _gray(pixels: Pixels) -> Pixels:
    return pixels if pixels.ndim == 2 else cv2.cvtColor(pixels, cv2.COLOR_BGR2GRAY)


def _at_most(pixels: Pixels, side_px: int, interpolation: int = cv2.INTER_AREA) -> tuple[Pixels, float]:
    """A copy whose longest side is at most ``side_px``, and the scale applied."""
    scale = min(1.0, side_px / max(pixels.shape[:2]))
    if scale == 1.0:
        return pixels, scale
    return cv2.resize(pixels, None, fx=scale, fy=scale, interpolation=interpolation), scale


def _scaled(box: Any, scale: float) -> Box:
    x, y, w, h = (round(float(v) / scale) for v in box)
    return (x, y, w, h)


def _box_around(corners: Any) -> Box:
    x, y, w, h = cv2.boundingRect(np.asarray(corners, dtype=np.float32).reshape(-1, 1, 2))
    return (max(0, x), max(0, y), w, h)
