"""The steps of a screen recording: each stable screen reached after a significant change, with a guessed action.

Frames stream through one at a time (a recording may hold thousands), so only three are held: the screen of the
last step (the anchor), the previous frame and the current one. A step starts when a frame differs from the
anchor by at least ``change_ratio`` of its pixels, and is recorded at the first frame after which the screen
holds still (the next frame differs by less than ``stable_ratio``), or at the last frame. Comparing with the
anchor, not only with the previous frame, lets slow changes such as text typed a character per frame add up
to a step; a change that is undone before the screen settles (a tooltip, a flicker) records nothing. Typing
that pauses is seen as several ``type`` steps next to each other: they are merged into one.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import cv2
import numpy as np

from stepper.errors import InvalidRequest
from stepper.providers.engines.ocr import OcrEngine

Frame = np.ndarray[Any, Any]
Box = tuple[int, int, int, int]
Action = Literal["click", "type", "scroll", "navigate"]

#: Frame rates beyond this are taken for a broken header, not believed (frames per second).
MAX_PLAUSIBLE_FPS = 1000.0
#: Timestamps are rounded milliseconds: a frame this close before a sampling time is taken as on it (seconds).
TIMESTAMP_SLACK_S = 1e-3
#: Containers a video may come in, by their first bytes. Anything else is refused before FFmpeg sees it: FFmpeg
#: probes content, and a playlist format (HLS) would make it open URLs on the worker's network.
VIDEO_CONTAINERS = {"mp4": "MP4/MOV", "avi": "AVI", "mkv": "WebM/Matroska"}
THUMBNAIL_MAX_SIDE_PX = 320
MAX_CAPTION_CHARS = 200
#: Tesseract reads glyphs best at 20-30 pixels high: crops lower than this are enlarged before OCR...
CAPTION_UPSCALE_BELOW_PX = 100
#: ...and crops longer than this are shrunk, which keeps OCR of a whole 4K page affordable.
CAPTION_MAX_SIDE_PX = 2000
#: Words OCR is less sure of than this are left out of captions.
CAPTION_MIN_CONFIDENCE = 40.0


@dataclass(frozen=True)
class StepThresholds:
    """What counts as a change, as stillness and as each action. Ratios are shares of the frame's pixels."""

    change_ratio: float = 0.002  # a step needs at least this much of the screen changed
    stable_ratio: float = 0.0005  # consecutive frames differing by less than this are the same screen
    pixel_delta: int = 25  # a pixel changed when a colour channel moved by more (ignores compression noise)
    min_region_pixels: int = 12  # changed regions with fewer changed pixels are noise
    merge_px: int = 9  # changed pixels this close together form one region
    navigate_ratio: float = 0.5  # most of the screen changed: a new page
    min_scroll_px: int = 8  # smaller vertical shifts are not scrolls
    scroll_residual: float = 0.2  # a shift is a scroll when it explains all but this share of the change
    type_min_aspect: float = 3.0  # a typed line is wide and short...
    type_max_height_px: int = 60
    type_max_fill: float = 0.75  # ...and its glyphs leave part of their box; a button changing colour fills it


@dataclass(frozen=True)
class Change:
    ratio: float  # changed pixels (noise removed) / all pixels
    box: Box | None  # the union of the changed regions, or None when only noise changed
    mask: Frame  # 255 where a pixel changed


@dataclass(frozen=True)
class DetectedStep:
    frame: int  # the number of the stable frame the step ends on
    box: Box
    change_ratio: float
    action: Action
    screen: Frame  # that frame's pixels, for captions and thumbnails


def detect_steps(
    frames: Iterable[tuple[int, Frame]], thresholds: StepThresholds = StepThresholds()
) -> Iterator[DetectedStep]:
    """Steps in numbered BGR frames, in order. Frames of another size than the anchor count as fully changed."""
    held: tuple[Frame, DetectedStep] | None = None  # the last step and its anchor, kept while typing may go on
    for anchor, step in settled_changes(frames, thresholds):
        if held is not None and (typed := _typing_continued(*held, step, thresholds)) is not None:
            held = (held[0], typed)
            continue
        if held is not None:
            yield held[1]
        held = (anchor, step)
    if held is not None:
        yield held[1]


def settled_changes(
    frames: Iterable[tuple[int, Frame]], thresholds: StepThresholds
) -> Iterator[tuple[Frame, DetectedStep]]:
    """Each step with the frame it was measured from, before typing steps are merged."""
    still_below = min(thresholds.stable_ratio, thresholds.change_ratio)
    anchor: Frame | None = None  # the screen of the last step
    resting: Frame | None = None  # the last frame the screen was still on
    start: Frame | None = None  # while a change goes on: the frame the screen rested on before it began
    previous: tuple[int, Frame] | None = None
    for number, frame in frames:
        if anchor is None or resting is None or previous is None:
            anchor = resting = frame
            previous = (number, frame)
            continue
        still = measure_change(previous[1], frame, thresholds).ratio < still_below
        if start is not None and still:
            if (found := settle(anchor, start, *previous, thresholds)) is not None:
                yield found
                anchor = previous[1]
            start = None
        if still:
            resting = frame
        elif start is None and measure_change(anchor, frame, thresholds).ratio >= thresholds.change_ratio:
            start = resting
        previous = (number, frame)
    if start is not None and anchor is not None and previous is not None:
        found = settle(anchor, start, *previous, thresholds)
        if found is not None:
            yield found


def settle(
    anchor: Frame, start: Frame, number: int, screen: Frame, thresholds: StepThresholds
) -> tuple[Frame, DetectedStep] | None:
    """The step that ends on the stable ``screen``, and the frame it was measured from.

    That is the change since ``start``, just before the screen began to move, when it is large enough: small
    changes left over from before (a cursor, a tooltip) must not change the step's box or action. Otherwise,
    or when both are typing (text typed with pauses), it is everything since the last step's ``anchor``. None
    when neither is large enough, as when the change was undone before the screen settled.
    """
    recent = _step_from(start, number, screen, thresholds) if start is not anchor else None
    if recent is not None and recent.action != "type":
        return start, recent
    since_anchor = _step_from(anchor, number, screen, thresholds)
    if since_anchor is not None and (recent is None or since_anchor.action == "type"):
        return anchor, since_anchor
    return (start, recent) if recent is not None else None


def _step_from(before: Frame, number: int, screen: Frame, thresholds: StepThresholds) -> DetectedStep | None:
    change = measure_change(before, screen, thresholds)
    if change.box is None or change.ratio < thresholds.change_ratio:
        return None
    action = guess_action(before, screen, change, thresholds)
    return DetectedStep(number, change.box, round(change.ratio, 5), action, screen)


def measure_change(before: Frame, after: Frame, thresholds: StepThresholds) -> Change:
    """Which pixels changed, grouped into regions (absdiff, threshold, dilate, connected regions)."""
    if before.shape != after.shape:
        before = cv2.resize(before, (after.shape[1], after.shape[0]), interpolation=cv2.INTER_AREA)
    delta = cv2.absdiff(before, after)
    if delta.ndim == 3:  # any channel: a colour change at equal brightness counts too
        delta = np.maximum(np.maximum(delta[..., 0], delta[..., 1]), delta[..., 2])
    _, changed = cv2.threshold(delta, thresholds.pixel_delta, 255, cv2.THRESH_BINARY)
    if cv2.countNonZero(changed) == 0:  # the common case, a screen at rest: nothing more to do
        return Change(0.0, None, changed)
    kernel = np.ones((thresholds.merge_px, thresholds.merge_px), np.uint8)
    count, labels, _, _ = cv2.connectedComponentsWithStats(cv2.dilate(changed, kernel))
    pixels_per_region = np.bincount(labels[changed > 0], minlength=count)
    noise = pixels_per_region < thresholds.min_region_pixels
    noise[0] = True  # the background
    changed[noise[labels]] = 0
    total = cv2.countNonZero(changed)
    if total == 0:
        return Change(0.0, None, changed)
    x, y, w, h = cv2.boundingRect(changed)
    return Change(total / changed.size, (x, y, w, h), changed)


def guess_action(before: Frame, after: Frame, change: Change, thresholds: StepThresholds) -> Action:
    """scroll (the content moved vertically), navigate (most of the screen changed), type (new text), or click."""
    assert change.box is not None
    x, y, w, h = change.box
    if scroll_shift(before, after, change.box, thresholds) is not None:
        return "scroll"
    if change.ratio > thresholds.navigate_ratio:
        return "navigate"
    region = change.mask[y : y + h, x : x + w]
    fill = cv2.countNonZero(region) / (w * h)
    line_shaped = w / h >= thresholds.type_min_aspect and h <= thresholds.type_max_height_px
    if fill <= thresholds.type_max_fill and (line_shaped or _new_dark_glyphs(before, after, change)):
        return "type"
    return "click"


def scroll_shift(before: Frame, after: Frame, box: Box, thresholds: StepThresholds) -> int | None:
    """Rows the content in ``box`` moved up (negative: down), when a vertical shift explains the change.

    Phase correlation proposes the shift; it is accepted only when shifting ``before`` by it leaves at most
    ``scroll_residual`` of the pixels that differ without the shift.
    """
    x, y, w, h = box
    if h < 3 * thresholds.min_scroll_px or w < 8 or before.shape != after.shape:
        return None
    old, new = (_gray(frame[y : y + h, x : x + w]) for frame in (before, after))
    (dx, dy), _ = cv2.phaseCorrelate(old.astype(np.float32), new.astype(np.float32))
    shift = -round(dy)
    if abs(dx) > 1.5 or abs(shift) < thresholds.min_scroll_px or abs(shift) > h - thresholds.min_scroll_px:
        return None
    overlap = h - abs(shift)
    new_rows = new[:overlap] if shift > 0 else new[-overlap:]
    moved = old[shift:] if shift > 0 else old[:overlap]
    unmoved = old[:overlap] if shift > 0 else old[-overlap:]
    without_shift = _count_changed(unmoved, new_rows, thresholds)
    with_shift = _count_changed(moved, new_rows, thresholds)
    if without_shift == 0 or with_shift > thresholds.scroll_residual * without_shift:
        return None
    return shift


def _typing_continued(
    anchor: Frame, last: DetectedStep, step: DetectedStep, thresholds: StepThresholds
) -> DetectedStep | None:
    """One ``type`` step from ``last``'s anchor to ``step``'s screen, when both typed text next to each other."""
    if last.action != "type" or step.action != "type":
        return None
    (x1, y1, w1, h1), (x2, y2, w2, h2) = last.box, step.box
    reach = 2 * max(h1, h2)
    if x2 > x1 + w1 + reach or x1 > x2 + w2 + reach or y2 > y1 + h1 + reach or y1 > y2 + h2 + reach:
        return None
    merged = _step_from(anchor, step.frame, step.screen, thresholds)
    return merged if merged is not None and merged.action == "type" else None


def _new_dark_glyphs(before: Frame, after: Frame, change: Change) -> bool:
    """Most changed pixels got darker on a light background: ink appeared, as when text is typed."""
    where = change.mask > 0
    old, new = _gray(before)[where].astype(np.int16), _gray(after)[where].astype(np.int16)
    return bool(np.mean(new < old) >= 0.7 and np.median(old) >= 160)


def _count_changed(a: Frame, b: Frame, thresholds: StepThresholds) -> int:
    return int(np.count_nonzero(cv2.absdiff(a, b) > thresholds.pixel_delta))


def _gray(pixels: Frame) -> Frame:
    return pixels if pixels.ndim == 2 else cv2.cvtColor(pixels, cv2.COLOR_BGR2GRAY)


def crop(screen: Frame, box: Box, pad_px: int = 4) -> Frame:
    """The box, with a small margin, clipped to the screen."""
    x, y, w, h = box
    height, width = screen.shape[:2]
    return screen[max(0, y - pad_px) : min(height, y + h + pad_px), max(0, x - pad_px) : min(width, x + w + pad_px)]


def thumbnail_png(pixels: Frame, max_side_px: int = THUMBNAIL_MAX_SIDE_PX) -> bytes:
    """PNG bytes of the pixels, shrunk so the longest side is at most ``max_side_px``."""
    scale = max_side_px / max(pixels.shape[:2])
    if scale < 1:
        pixels = cv2.resize(pixels, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    ok, encoded = cv2.imencode(".png", pixels)
    assert ok  # PNG encodes any 8-bit image
    return encoded.tobytes()


def caption(engine: OcrEngine, lang: str, screen: Frame, box: Box) -> str | None:
    """The text OCR reads in a step's box, in one line, or None when it reads nothing it is sure of.

    The box is cut tight (a margin of another colour around a button hides its label from tesseract), enlarged
    when small, and binarised with the background, whichever colour it was, made white.
    """
    gray = _gray(crop(screen, box, pad_px=0))
    side = min(gray.shape[:2])
    if side < CAPTION_UPSCALE_BELOW_PX:
        factor = min(4, math.ceil(CAPTION_UPSCALE_BELOW_PX / side))
        gray = cv2.resize(gray, None, fx=factor, fy=factor, interpolation=cv2.INTER_CUBIC)
    elif max(gray.shape[:2]) > CAPTION_MAX_SIDE_PX:
        factor = CAPTION_MAX_SIDE_PX / max(gray.shape[:2])
        gray = cv2.resize(gray, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
    _, ink = cv2.threshold(gray, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    if cv2.countNonZero(ink) < ink.size / 2:
        ink = cv2.bitwise_not(ink)
    ink = cv2.copyMakeBorder(ink, 10, 10, 10, 10, cv2.BORDER_CONSTANT, value=255)  # glyphs at the edge are missed
    words = engine.recognise(ink, lang, 6 if ink.shape[0] < 4 * CAPTION_UPSCALE_BELOW_PX else 3, None).words
    text = " ".join(word.text for word in words if word.confidence >= CAPTION_MIN_CONFIDENCE)
    return text[:MAX_CAPTION_CHARS] or None


def video_container(data: bytes) -> str | None:
    """The container of a video, from its first bytes: ``mp4`` (MP4, MOV), ``avi``, ``mkv`` (WebM too)."""
    if data[4:8] == b"ftyp":
        return "mp4"
    if data[:4] == b"RIFF" and data[8:12] == b"AVI ":
        return "avi"
    if data[:4] == b"\x1a\x45\xdf\xa3":
        return "mkv"
    return None


@dataclass
class VideoFrames:
    """Numbered BGR frames of a video sampled at a steady rate by their timestamps, read to its end or to a bound.

    Iterate once. The declared frame count and duration are never used: a WebM streamed by a browser
    (MediaRecorder) states neither, and other containers may state them wrongly. A frame is sampled when its
    timestamp (``CAP_PROP_POS_MSEC``) reaches the next sampling time, one every ``1 / sample_fps`` seconds;
    without timestamps, time is the frame's number over the declared frame rate (without one, every frame is
    sampled).
    Reading stops at the video's end, after ``max_frames`` samples, or at the first frame past ``max_seconds``;
    afterwards ``frames_read`` (frames sampled), ``seconds_read`` (the last sample's timestamp, seconds) and
    ``truncated`` (a bound stopped the reading while the video went on) describe what was read.
    Raises InvalidRequest when a frame does not decode, is over ``max_pixels`` or when no frame decodes.
    """

    capture: cv2.VideoCapture
    max_frames: int
    max_pixels: int
    max_seconds: float = math.inf
    sample_fps: float = math.inf
    frames_read: int = 0
    seconds_read: float = 0.0
    truncated: bool = False

    def __iter__(self) -> Iterator[tuple[int, Frame]]:
        declared_fps = self.capture.get(cv2.CAP_PROP_FPS)
        fps = declared_fps if 0 < declared_fps <= MAX_PLAUSIBLE_FPS else None
        interval_s = 1 / self.sample_fps
        next_sample_s = 0.0
        last_s = -math.inf
        origin_s = 0.0  # the first frame's timestamp: a stream cut out of a longer one may not start at 0
        number = 0
        while self.capture.grab():
            if self.frames_read >= self.max_frames:
                self.truncated = True  # another frame exists past the last one sampled
                break
            if number == 0:
                first_s = self.capture.get(cv2.CAP_PROP_POS_MSEC) / 1000
                origin_s = first_s if math.isfinite(first_s) and first_s > 0 else 0.0
            seconds = self._timestamp_s(number, fps, last_s, origin_s)
            if seconds > self.max_seconds:
                self.truncated = True
                break
            last_s = seconds
            if seconds >= next_sample_s - TIMESTAMP_SLACK_S:
                yield number, self._retrieve(number)
                self.frames_read += 1
                self.seconds_read = round(seconds, 3)  # timestamps are whole milliseconds
                # The next point of a steady grid: a gap in the video resumes sampling on the grid after it.
                ticks = math.floor(seconds / interval_s + TIMESTAMP_SLACK_S) + 1 if interval_s > 0 else 0
                next_sample_s = ticks * interval_s if interval_s > 0 else seconds
            number += 1
        if number == 0:
            raise InvalidRequest("the video has no frame that decodes")

    def _timestamp_s(self, number: int, fps: float | None, last_s: float, origin_s: float) -> float:
        """The frame's time in seconds since the first: its timestamp when the container gives increasing ones,
        else its number over the declared frame rate, else its number over ``sample_fps``."""
        stamp_s = self.capture.get(cv2.CAP_PROP_POS_MSEC) / 1000 - origin_s
        if math.isfinite(stamp_s) and stamp_s >= 0 and (stamp_s > last_s or number == 0):
            return float(stamp_s)
        # Neither timestamps nor a frame rate: frames are taken as one sampling interval apart, so every frame
        # is sampled and max_seconds counts sampling intervals (with sample_fps infinite, time stays at 0).
        rate = fps if fps is not None else self.sample_fps
        return max(number / rate, last_s)

    def _retrieve(self, number: int) -> Frame:
        ok, frame = self.capture.retrieve()
        if not ok or frame is None:
            raise InvalidRequest(f"frame {number} of the video cannot be decoded")
        _check_pixels(frame.shape[1], frame.shape[0], self.max_pixels)
        return frame


@contextmanager
def open_video(
    data: bytes,
    max_frames: int,
    max_pixels: int,
    max_seconds: float = math.inf,
    sample_fps: float = math.inf,
) -> Iterator[VideoFrames]:
    """The video's frames (see VideoFrames): at most ``max_frames`` samples over at most ``max_seconds`` seconds,
    ``sample_fps`` a second (every frame when infinite), each at most ``max_pixels`` pixels.

    Raises InvalidRequest, before FFmpeg sees the bytes, when they are not a known container, and before any
    frame is decoded when the video cannot be opened or declares frames over ``max_pixels``.
    """
    container = video_container(data)
    if container is None:
        raise InvalidRequest(
            f"the video is not {', '.join(VIDEO_CONTAINERS.values())} (by its first bytes; {len(data):,} bytes given)"
        )
    with tempfile.NamedTemporaryFile(prefix="stepper-video-", suffix=f".{container}") as file:
        file.write(data)
        file.flush()
        capture = cv2.VideoCapture(file.name, cv2.CAP_FFMPEG)
        try:
            if not capture.isOpened():
                raise InvalidRequest(
                    f"the {VIDEO_CONTAINERS[container]} video cannot be opened ({len(data):,} bytes; damaged or "
                    "not a video?)"
                )
            declared = (int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)))
            _check_pixels(*declared, max_pixels)  # before any frame is decoded; each decoded one is checked again
            yield VideoFrames(capture, max_frames, max_pixels, max_seconds, sample_fps)
        finally:
            capture.release()


def _check_pixels(width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise InvalidRequest(
            f"the video is {width}x{height} = {width * height:,} pixels a frame; the limit is {max_pixels:,}"
        )
