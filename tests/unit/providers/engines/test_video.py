"""Videos read to their end: a WebM streamed without its length gives the same steps as one that states it,
bounds cut the reading and say so, and bytes that are no video are refused. Real OpenCV, real ffmpeg."""

from __future__ import annotations

import base64
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import cv2
import numpy as np
import pytest

from stepper.config import current_settings
from stepper.errors import ConfigError, InvalidRequest
from stepper.providers.engines.steps import VideoFrames, open_video
from stepper.providers.opencv import OpenCvProvider
from stepper.schemas import StepsOutput, StepsRequest
from stepper.settings import ImageSettings, ProviderSettings
from tests.support.screencasts import (
    DIALOG_AT_S,
    FPS,
    HEIGHT,
    PRESSED_AT_S,
    SECONDS,
    WIDTH,
    encode_webm,
    probed_duration,
    screencast,
)

SetArtifacts = Callable[[int], Path]
SAMPLE_FPS = 10  # VideoSettings.sample_fps, the default


@pytest.fixture(scope="module")
def webms(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The screencast as a WebM with its duration ("seekable") and as a browser streams it ("streamed")."""
    directory = tmp_path_factory.mktemp("webm")
    frames = screencast()
    paths = {"seekable": directory / "seekable.webm", "streamed": directory / "streamed.webm"}
    for name, path in paths.items():
        encode_webm(frames, path, streamed=name == "streamed")
    return paths


def steps_of(source: Path | bytes, **request: object) -> StepsOutput:
    """The opencv provider's answer for the video (a file, or its bytes) with the request's other fields."""
    provider = OpenCvProvider(ProviderSettings.model_validate({"name": "opencv", "class": "x:Y"}))
    data = source.read_bytes() if isinstance(source, Path) else source
    video = {"b64": base64.b64encode(data).decode()}
    return provider.detect_steps(StepsRequest.model_validate({"video": video, **request}), "opencv").output


def test_the_streamed_webm_states_no_length(webms: dict[str, Path]) -> None:
    assert float(probed_duration(webms["seekable"])) == pytest.approx(SECONDS, abs=0.1)
    assert probed_duration(webms["streamed"]) == "N/A"
    capture = cv2.VideoCapture(str(webms["streamed"]), cv2.CAP_FFMPEG)
    try:
        assert capture.isOpened() and capture.get(cv2.CAP_PROP_FRAME_COUNT) <= 0
    finally:
        capture.release()


def test_both_webms_give_the_same_two_steps_read_to_the_end(artifact_dir: SetArtifacts, webms: dict[str, Path]) -> None:
    seekable, streamed = steps_of(webms["seekable"]), steps_of(webms["streamed"])
    assert [(s.frame, s.box, s.action) for s in streamed.steps] == [(s.frame, s.box, s.action) for s in seekable.steps]
    dialog, pressed = streamed.steps  # exactly two
    assert DIALOG_AT_S * FPS <= dialog.frame < (DIALOG_AT_S + 1) * FPS
    assert PRESSED_AT_S * FPS <= pressed.frame < (PRESSED_AT_S + 1) * FPS
    for output in (seekable, streamed):
        assert output.truncated is False
        assert output.frames_read == SECONDS * SAMPLE_FPS  # 10 a second over the whole video
        assert output.seconds_read == pytest.approx(SECONDS - 1 / SAMPLE_FPS, abs=0.01)


def test_a_bound_cuts_the_reading_and_says_so(artifact_dir: SetArtifacts, webms: dict[str, Path]) -> None:
    by_frames = steps_of(webms["streamed"], max_frames=20)
    assert (by_frames.frames_read, by_frames.seconds_read, by_frames.truncated) == (20, 1.9, True)
    assert by_frames.steps == []  # the dialog opens after 3 seconds
    by_time = steps_of(webms["streamed"], max_seconds=6)
    assert (by_time.frames_read, by_time.seconds_read, by_time.truncated) == (61, 6.0, True)
    assert [step.frame for step in by_time.steps] == [steps_of(webms["seekable"]).steps[0].frame]  # the dialog only


def test_a_bound_of_the_worker_is_never_raised_by_a_request(webms: dict[str, Path]) -> None:
    provider = OpenCvProvider(
        ProviderSettings.model_validate(
            {"name": "opencv", "class": "x:Y", "options": {"max_video_frames": 5, "max_video_seconds": 1}}
        )
    )
    video = {"b64": "AAAA"}
    limits = provider.video_limits(StepsRequest.model_validate({"video": video, "max_frames": 50, "max_seconds": 9}))
    assert (limits.max_frames, limits.max_seconds) == (5, 1)
    limits = provider.video_limits(StepsRequest.model_validate({"video": video, "max_frames": 2}))
    assert (limits.max_frames, limits.max_seconds) == (2, 1)
    broken = OpenCvProvider(
        ProviderSettings.model_validate({"name": "opencv", "class": "x:Y", "options": {"video_sample_fps": 0}})
    )
    with pytest.raises(ConfigError, match="sample_fps"):
        broken.video_limits(StepsRequest.model_validate({"video": video}))
    assert "sample_fps" in (OpenCvProvider.unavailable_reason(broken.settings) or "")  # the chain skips it, saying why


def test_open_video_reads_the_streamed_webm_frame_by_frame(webms: dict[str, Path]) -> None:
    data = webms["streamed"].read_bytes()
    with open_video(data, max_frames=10_000, max_pixels=WIDTH * HEIGHT) as frames:
        numbers = [number for number, _ in frames]
    assert numbers == list(range(SECONDS * FPS))  # every frame, to the last, without a declared length
    assert (frames.frames_read, frames.truncated) == (SECONDS * FPS, False)


@pytest.mark.parametrize(
    "data",
    [
        b"\x1a\x45\xdf\xa3" + os.urandom(4096),  # the EBML magic of WebM/Matroska, then noise
        b"\x00\x00\x00\x20ftypisom" + os.urandom(4096),  # an MP4 box header, then noise
        b"RIFF\x00\x10\x00\x00AVI " + os.urandom(4096),
    ],
    ids=["webm", "mp4", "avi"],
)
def test_garbage_with_a_video_signature_is_an_invalid_request(artifact_dir: SetArtifacts, data: bytes) -> None:
    with pytest.raises(InvalidRequest, match=r"cannot be opened|no frame that decodes|cannot be decoded"):
        steps_of(data)


def test_a_cut_webm_is_an_invalid_request(artifact_dir: SetArtifacts, webms: dict[str, Path]) -> None:
    with pytest.raises(InvalidRequest, match=r"cannot be opened|no frame that decodes|cannot be decoded"):
        steps_of(webms["streamed"].read_bytes()[:300])  # the header and part of a cluster


def test_a_frame_over_the_pixel_limit_is_refused_before_decoding(
    artifact_dir: SetArtifacts, webms: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    small = current_settings().model_copy(update={"images": ImageSettings(max_pixels=1000)})
    monkeypatch.setattr("stepper.providers.opencv.current_settings", lambda: small)
    with pytest.raises(InvalidRequest, match=r"480x320 = 153,600 pixels a frame; the limit is 1,000"):
        steps_of(webms["streamed"])


class Stampless:
    """A capture whose container gives neither timestamps nor a frame rate, as some damaged files do."""

    def __init__(self, frames: int) -> None:
        self.left = frames

    def grab(self) -> bool:
        self.left -= 1
        return self.left >= 0

    def retrieve(self) -> tuple[bool, np.ndarray[Any, Any]]:
        return True, np.zeros((4, 4, 3), np.uint8)

    def get(self, prop: int) -> float:
        return 0.0  # CAP_PROP_POS_MSEC and CAP_PROP_FPS alike: unknown


def test_without_timestamps_or_frame_rate_every_frame_is_sampled() -> None:
    frames = VideoFrames(cast(cv2.VideoCapture, Stampless(30)), max_frames=100, max_pixels=16, sample_fps=10)
    assert [number for number, _ in frames] == list(range(30))
    assert (frames.frames_read, frames.seconds_read, frames.truncated) == (30, 2.9, False)
    bounded = VideoFrames(cast(cv2.VideoCapture, Stampless(30)), 100, 16, max_seconds=1.0, sample_fps=10)
    assert len(list(bounded)) == 11 and bounded.truncated
