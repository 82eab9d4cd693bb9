"""Step detection on recordings drawn with OpenCV: each scripted step is found, on its frame, with its action."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest

from stepper.errors import InvalidRequest
from stepper.providers.engines.ocr import OcrEngine
from stepper.providers.engines.steps import (
    Box,
    DetectedStep,
    Frame,
    StepThresholds,
    caption,
    detect_steps,
    measure_change,
    open_video,
    scroll_shift,
    thumbnail_png,
)
from stepper.providers.engines.vision import reader
from tests.support.binaries import require_binary

WIDTH, HEIGHT = 640, 400
TITLE_BAR_PX = 36
FONT = cv2.FONT_HERSHEY_SIMPLEX
#: Where things sit on the screen before the page scrolls: [x, y, w, h].
FIELD: Box = (40, 90, 380, 44)
BUTTON: Box = (460, 190, 120, 44)
CONTENT: Box = (0, TITLE_BAR_PX, WIDTH, HEIGHT - TITLE_BAR_PX)
SCROLL_PX = 120
TYPED = "Hello world"


@dataclass(frozen=True)
class Scripted:
    frame: int
    action: str
    region: Box  # where the change was drawn


def document(pressed: bool, typed: str) -> Frame:
    """A page taller than the window: a heading, a text field, a button, then lines of text and coloured bars."""
    page = np.full((HEIGHT - TITLE_BAR_PX + 400, WIDTH, 3), 255, np.uint8)
    cv2.putText(page, "Create an account", (40, 40), FONT, 1.0, (40, 40, 40), 2, cv2.LINE_AA)
    x, y, w, h = FIELD
    y -= TITLE_BAR_PX
    cv2.rectangle(page, (x, y), (x + w, y + h), (150, 150, 150), 1)
    cv2.putText(page, typed, (x + 10, y + 30), FONT, 0.8, (20, 20, 20), 2, cv2.LINE_AA)
    x, y, w, h = BUTTON
    y -= TITLE_BAR_PX
    cv2.rectangle(page, (x, y), (x + w, y + h), (200, 120, 40) if pressed else (225, 225, 225), cv2.FILLED)
    label = (255, 255, 255) if pressed else (30, 30, 30)
    cv2.putText(page, "Save", (x + 30, y + 30), FONT, 0.8, label, 2, cv2.LINE_AA)
    rng = np.random.default_rng(7)
    letters = list("abcdefghijklmnopqrstuvwxyz")
    for row in range(220, page.shape[0] - 20, 34):
        words = (
            "".join(str(c) for c in rng.choice(letters, int(rng.integers(2, 9))))
            for _ in range(int(rng.integers(3, 7)))
        )
        cv2.putText(page, " ".join(words), (40 + int(rng.integers(0, 60)), row), FONT, 0.6, (60, 60, 60), 1)
        if rng.random() < 0.4:
            colour = tuple(int(c) for c in rng.integers(0, 255, 3))
            cv2.rectangle(page, (500, row - 20), (500 + int(rng.integers(30, 100)), row + 4), colour, cv2.FILLED)
    return page


def window(page: Frame, scrolled_px: int = 0, title: str = "Sign up") -> Frame:
    """The window: a title bar over the visible part of the page."""
    frame = np.empty((HEIGHT, WIDTH, 3), np.uint8)
    frame[:TITLE_BAR_PX] = (120, 60, 30)
    cv2.putText(frame, title, (12, 25), FONT, 0.6, (255, 255, 255), 1, cv2.LINE_AA)
    frame[TITLE_BAR_PX:] = page[scrolled_px : scrolled_px + HEIGHT - TITLE_BAR_PX]
    return frame


def welcome_page() -> Frame:
    frame = np.full((HEIGHT, WIDTH, 3), (60, 40, 30), np.uint8)
    frame[:TITLE_BAR_PX] = (30, 30, 30)
    cv2.putText(frame, "Welcome", (12, 25), FONT, 0.6, (255, 255, 255), 1, cv2.LINE_AA)
    cv2.putText(frame, "Your account is ready", (60, 200), FONT, 1.2, (255, 255, 255), 2, cv2.LINE_AA)
    return frame


def recording() -> tuple[list[Frame], list[Scripted]]:
    """A click, typing across frames, a scroll and a new page, each followed by frames where nothing moves."""
    frames = [window(document(False, ""))] * 2
    frames += [window(document(True, ""))] * 3
    frames += [window(document(True, TYPED[:3])), window(document(True, TYPED[:7]))]
    frames += [window(document(True, TYPED))] * 3
    frames += [window(document(True, TYPED), SCROLL_PX)] * 3
    frames += [welcome_page()] * 3
    script = [
        Scripted(2, "click", BUTTON),
        Scripted(7, "type", FIELD),
        Scripted(10, "scroll", CONTENT),
        Scripted(13, "navigate", (0, 0, WIDTH, HEIGHT)),
    ]
    return frames, script


def png(frame: Frame) -> bytes:
    ok, encoded = cv2.imencode(".png", frame)
    assert ok
    return encoded.tobytes()


def decoded(data: bytes) -> Frame:
    pixels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert pixels is not None
    return pixels


def jpeg(frame: Frame, quality: int = 70) -> Frame:
    ok, encoded = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return decoded(encoded.tobytes())


def overlap(a: Box, b: Box) -> float:
    """The share of ``a`` that lies inside ``b``."""
    width = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    height = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    return max(0, width) * max(0, height) / (a[2] * a[3])


def grown(box: Box, margin_px: int = 4) -> Box:
    """The box with a margin: drawn edges are anti-aliased, and compression rings around them."""
    x, y, w, h = box
    return (x - margin_px, y - margin_px, w + 2 * margin_px, h + 2 * margin_px)


def require_ocr() -> OcrEngine:
    """The English OCR engine; skips without tesseract locally, fails without it in CI."""
    engine = reader("eng")
    if engine is None:
        require_binary("tesseract", "tesseract-ocr")
        pytest.fail("tesseract is installed without English; install tesseract-ocr-eng")
    return engine


def steps_of(frames: list[Frame], thresholds: StepThresholds | None = None) -> list[DetectedStep]:
    return list(detect_steps(enumerate(frames), thresholds or StepThresholds()))


def assert_follows(found: list[DetectedStep], script: list[Scripted]) -> None:
    assert [(s.frame, s.action) for s in found] == [(s.frame, s.action) for s in script]
    for step, scripted in zip(found, script, strict=True):
        assert overlap(step.box, grown(scripted.region)) == 1, (step, scripted)  # the box lies on the drawn region
        assert overlap(scripted.region, step.box) > 0.1 or step.action == "type", (step, scripted)
        assert StepThresholds().change_ratio <= step.change_ratio <= 1


def test_recording_steps_follow_the_script() -> None:
    frames, script = recording()
    found = steps_of(frames)
    assert_follows(found, script)
    click, typed, scroll, navigate = found
    assert overlap(BUTTON, click.box) > 0.95  # the whole button changed colour
    assert typed.box[2] > 3 * typed.box[3]  # one line of text
    assert scroll.box[1] >= TITLE_BAR_PX  # the title bar stayed put
    assert navigate.box == (0, 0, WIDTH, HEIGHT) and navigate.change_ratio > 0.5
    assert all(step.screen is frames[step.frame] for step in found)


def test_compression_noise_changes_nothing() -> None:
    frames, script = recording()
    assert_follows(steps_of([jpeg(frame) for frame in frames]), script)


def test_still_frames_and_undone_changes_make_no_step() -> None:
    screen = window(document(False, ""))
    tooltip = screen.copy()
    cv2.rectangle(tooltip, (100, 100), (300, 160), (0, 0, 0), cv2.FILLED)
    assert steps_of([screen]) == []
    assert steps_of([screen] * 5) == []
    assert steps_of([screen, screen, tooltip, screen, screen]) == []  # shown and gone before the screen settled


def test_a_change_on_the_last_frame_is_a_step() -> None:
    before, after = window(document(False, "")), window(document(True, ""))
    assert [(s.frame, s.action) for s in steps_of([before, before, after])] == [(2, "click")]


@pytest.mark.parametrize("pause", [False, True], ids=["without-pauses", "with-pauses"])
def test_typing_a_character_at_a_time_is_one_step(pause: bool) -> None:
    text = "Hello world, this is stepper"
    frames = [window(document(False, ""))] * 2
    for end in range(1, len(text) + 1):
        frames += [window(document(False, text[:end]))] * (2 if pause else 1)
    frames += [window(document(False, text))] * 2
    frames += [window(document(True, text))] * 2  # then the button, with a few characters not yet a step
    found = steps_of(frames)
    assert [s.action for s in found] == ["type", "click"]
    typed, click = found
    assert overlap(typed.box, FIELD) == 1 and typed.box[2] > 300  # the whole line, not its last characters
    assert overlap(click.box, grown(BUTTON)) == 1 and overlap(BUTTON, click.box) > 0.95


def test_threshold_decides_what_is_a_step() -> None:
    screen = window(document(False, ""))
    ticked = screen.copy()
    cv2.rectangle(ticked, (500, 110), (512, 122), (0, 0, 0), cv2.FILLED)  # 169 pixels: 0.00066 of the screen
    frames = [screen, screen, ticked, ticked]
    assert steps_of(frames) == []
    found = steps_of(frames, StepThresholds(change_ratio=0.0005))
    assert [(s.frame, s.action, s.box) for s in found] == [(2, "click", (500, 110, 13, 13))]


def test_a_frame_of_another_size_is_a_new_page() -> None:
    small = window(document(False, ""))
    large = cv2.resize(welcome_page(), (800, 500))
    found = steps_of([small, large, large])
    assert [(s.frame, s.action, s.box) for s in found] == [(1, "navigate", (0, 0, 800, 500))]


def test_scroll_shift_is_signed_and_verified() -> None:
    thresholds = StepThresholds()
    top, lower = window(document(True, TYPED)), window(document(True, TYPED), SCROLL_PX)
    box = measure_change(top, lower, thresholds).box
    assert box is not None
    assert scroll_shift(top, lower, box, thresholds) == SCROLL_PX
    assert scroll_shift(lower, top, box, thresholds) == -SCROLL_PX
    assert scroll_shift(top, welcome_page(), (0, 0, WIDTH, HEIGHT), thresholds) is None


def test_noise_regions_are_ignored() -> None:
    screen = window(document(False, ""))
    speckled = screen.copy()
    for x, y in ((100, 300), (300, 320), (600, 250)):
        speckled[y, x] = 255 - speckled[y, x]
    change = measure_change(screen, speckled, StepThresholds())
    assert change.ratio == 0 and change.box is None


def test_thumbnail_is_a_small_png() -> None:
    data = thumbnail_png(welcome_page())
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and decoded(data).shape == (200, 320, 3)
    assert decoded(thumbnail_png(welcome_page()[:50, :80])).shape == (50, 80, 3)  # never enlarged


def test_captions_read_the_changed_region() -> None:
    engine = require_ocr()
    frames, _ = recording()
    click, typed, _, navigate = steps_of(frames)
    assert caption(engine, "eng", click.screen, click.box) == "Save"  # white on blue, cut from a white page
    assert caption(engine, "eng", typed.screen, typed.box) == TYPED
    assert caption(engine, "eng", navigate.screen, navigate.box) == "Welcome Your account is ready"
    blank = np.full((HEIGHT, WIDTH, 3), 255, np.uint8)
    assert caption(engine, "eng", blank, (10, 10, 200, 40)) is None


def write_video(path: Path, frames: list[Frame], fourcc: str = "mp4v") -> bytes:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*fourcc), 5, (WIDTH, HEIGHT))
    assert writer.isOpened(), f"this OpenCV cannot write {fourcc}"
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path.read_bytes()


@pytest.mark.parametrize(("fourcc", "suffix"), [("mp4v", "mp4"), ("MJPG", "avi")])
def test_video_frames_give_the_same_steps(tmp_path: Path, fourcc: str, suffix: str) -> None:
    frames, script = recording()
    data = write_video(tmp_path / f"recording.{suffix}", frames, fourcc)
    with open_video(data, max_frames=300, max_pixels=WIDTH * HEIGHT) as numbered:
        assert_follows(list(detect_steps(numbered)), script)


def test_video_is_sampled_by_time_and_cut_at_a_bound(tmp_path: Path) -> None:
    frames, _ = recording()  # 16 frames, 5 a second
    data = write_video(tmp_path / "recording.mp4", frames)
    with open_video(data, max_frames=100, max_pixels=WIDTH * HEIGHT, sample_fps=1.25) as numbered:
        assert [number for number, _ in numbered] == [0, 4, 8, 12]
        assert (numbered.frames_read, numbered.seconds_read, numbered.truncated) == (4, 2.4, False)
    with open_video(data, max_frames=100, max_pixels=WIDTH * HEIGHT) as numbered:
        assert [number for number, _ in numbered] == list(range(16))
        assert (numbered.frames_read, numbered.truncated) == (16, False)
    with open_video(data, max_frames=5, max_pixels=WIDTH * HEIGHT) as numbered:
        assert [number for number, _ in numbered] == list(range(5))
        assert (numbered.frames_read, numbered.truncated) == (5, True)
    with open_video(data, max_frames=100, max_pixels=WIDTH * HEIGHT, max_seconds=1.0) as numbered:
        assert [number for number, _ in numbered] == list(range(6))  # 0.0 to 1.0 seconds
        assert (numbered.seconds_read, numbered.truncated) == (1.0, True)


def test_videos_are_checked(tmp_path: Path) -> None:
    frames, _ = recording()
    data = write_video(tmp_path / "recording.mp4", frames)

    def first_frames(data: bytes, max_pixels: int = WIDTH * HEIGHT) -> Iterator[tuple[int, Frame]]:
        with open_video(data, 10, max_pixels) as numbered:
            yield from numbered

    with pytest.raises(InvalidRequest, match="not MP4/MOV, AVI, WebM/Matroska"):
        list(first_frames(b"#EXTM3U\n#EXT-X-TARGETDURATION:10\nhttp://127.0.0.1/segment.ts\n"))  # HLS: never opened
    with pytest.raises(InvalidRequest, match="not MP4"):
        list(first_frames(png(frames[0])))
    with pytest.raises(InvalidRequest, match=r"640x400 = 256,000 pixels a frame; the limit is 1,000"):
        list(first_frames(data, max_pixels=1000))
    with pytest.raises(InvalidRequest, match=r"cannot be opened|no frame"):
        list(first_frames(data[:200]))  # the header of an MP4 and nothing else
