"""Screen recordings made in the test, encoded by the real ffmpeg: a WebM with its duration, and one streamed
the way a browser's MediaRecorder writes it (no duration, no cues), which OpenCV cannot tell the length of.

The screencast: a settings screen at rest, a dialog that appears at ``DIALOG_AT_S``, and the dialog's button
that turns blue at ``PRESSED_AT_S``, late enough that a reader stopping after the first few hundred frames
misses it. Nothing binary is committed: every video is drawn with OpenCV and encoded here.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from tests.support.binaries import require_binary

Frame = np.ndarray[Any, Any]

WIDTH, HEIGHT = 480, 320
FPS = 30
SECONDS = 15
DIALOG_AT_S = 3.0
PRESSED_AT_S = 12.0  # frame 360: past the 300 frames read when the length was unknown
FONT = cv2.FONT_HERSHEY_SIMPLEX


def screen(dialog: bool, pressed: bool) -> Frame:
    """A settings page; optionally a dialog over it, whose OK button is grey or pressed (blue)."""
    frame = np.full((HEIGHT, WIDTH, 3), 245, np.uint8)
    frame[:40] = (90, 60, 40)
    cv2.putText(frame, "Settings", (14, 28), FONT, 0.8, (255, 255, 255), 2, cv2.LINE_AA)
    for row, label in enumerate(("Account", "Privacy", "Notifications", "Display")):
        y = 80 + 50 * row
        cv2.putText(frame, label, (30, y), FONT, 0.7, (40, 40, 40), 2, cv2.LINE_AA)
        cv2.rectangle(frame, (380, y - 20), (440, y + 4), (120, 180, 90), cv2.FILLED)
    if dialog:
        cv2.rectangle(frame, (100, 90), (380, 250), (255, 255, 255), cv2.FILLED)
        cv2.rectangle(frame, (100, 90), (380, 250), (80, 80, 80), 2)
        cv2.putText(frame, "Save changes?", (130, 140), FONT, 0.8, (30, 30, 30), 2, cv2.LINE_AA)
        colour, ink = ((200, 120, 40), (255, 255, 255)) if pressed else ((220, 220, 220), (30, 30, 30))
        cv2.rectangle(frame, (260, 190), (360, 232), colour, cv2.FILLED)
        cv2.putText(frame, "OK", (292, 220), FONT, 0.8, ink, 2, cv2.LINE_AA)
    return frame


def screencast(seconds: float = SECONDS, fps: int = FPS) -> list[Frame]:
    """Every frame of the recording, ``fps`` a second for ``seconds``."""
    frames = []
    for number in range(round(seconds * fps)):
        at_s = number / fps
        frames.append(screen(dialog=at_s >= DIALOG_AT_S, pressed=at_s >= PRESSED_AT_S))
    return frames


def encode_webm(frames: list[Frame], path: Path, *, streamed: bool, fps: int = FPS) -> bytes:
    """VP8 WebM of the frames. ``streamed``: written to a pipe, so ffmpeg can never seek back to write the
    duration and the cues, as with a browser's MediaRecorder; otherwise a file with both."""
    ffmpeg = require_binary("ffmpeg", "ffmpeg")
    command = [ffmpeg, "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "bgr24", "-s", f"{WIDTH}x{HEIGHT}"]
    command += ["-r", str(fps), "-i", "pipe:0", "-c:v", "libvpx", "-b:v", "1M", "-deadline", "realtime"]
    command += ["-cpu-used", "8", "-f", "webm"]
    raw = b"".join(frame.tobytes() for frame in frames)
    if streamed:
        encoded = subprocess.run([*command, "pipe:1"], input=raw, capture_output=True, check=True).stdout
        path.write_bytes(encoded)
    else:
        subprocess.run([*command, str(path)], input=raw, capture_output=True, check=True)
    return path.read_bytes()


def probed_duration(path: Path) -> str:
    """The container's duration as ffprobe reports it: seconds, or ``N/A`` when the header states none."""
    ffprobe = require_binary("ffprobe", "ffmpeg")
    command = [ffprobe, "-v", "error", "-show_entries", "format=duration", "-of", "default=nw=1:nk=1", str(path)]
    return subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip()


#: The toolbar's buttons, clicked in this order by ``toolbar_screencast``; each step's caption names one.
TOOLBAR_LABELS = ("Open", "Save", "Share")
STEP_EVERY_S = 1.0


def toolbar(pressed: int) -> Frame:
    """An editor with a toolbar of large buttons; the first ``pressed`` of them are pressed (blue)."""
    frame = np.full((HEIGHT, WIDTH, 3), 250, np.uint8)
    frame[:70] = (235, 235, 235)
    for number, label in enumerate(TOOLBAR_LABELS):
        left = 20 + 150 * number
        colour, ink = ((200, 110, 30), (255, 255, 255)) if number < pressed else ((250, 250, 250), (20, 20, 20))
        cv2.rectangle(frame, (left, 12), (left + 130, 60), colour, cv2.FILLED)
        cv2.rectangle(frame, (left, 12), (left + 130, 60), (90, 90, 90), 1)
        cv2.putText(frame, label, (left + 22, 46), FONT, 0.9, ink, 2, cv2.LINE_AA)
    cv2.putText(frame, "Untitled document", (30, 140), FONT, 0.8, (60, 60, 60), 2, cv2.LINE_AA)
    return frame


def toolbar_screencast(fps: int = FPS) -> list[Frame]:
    """A still editor, then one toolbar button clicked every ``STEP_EVERY_S``: three steps, in label order."""
    states = len(TOOLBAR_LABELS) + 1
    per_state = round(STEP_EVERY_S * fps)
    return [toolbar(pressed) for pressed in range(states) for _ in range(per_state)]
