"""The OpenCV provider end to end: base64 frames (or a video) in, steps with captions and thumbnails out."""

from __future__ import annotations

import base64
import hashlib
import sys
from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote, urlsplit

import cv2
import pytest
from pydantic import ValidationError

from stepper.config import current_settings
from stepper.errors import InvalidRequest
from stepper.providers.opencv import OpenCvProvider
from stepper.registry import import_provider
from stepper.schemas import StepsOutput, StepsRequest, VisionOutput, VisionRequest
from stepper.schemas.steps import Thumbnail
from stepper.settings import ImageSettings, ProviderSettings
from tests.unit.providers.engines.test_steps import TYPED, decoded, png, recording, require_ocr, write_video
from tests.unit.providers.engines.test_vision import blank, paste, printed_text, qr_code

SetArtifacts = Callable[[int], Path]
SPEC = {"name": "opencv", "class": "stepper.providers.opencv:OpenCvProvider"}


def make_provider(**fields: object) -> OpenCvProvider:
    return OpenCvProvider(ProviderSettings.model_validate({**SPEC, **fields}))


def b64(data: bytes) -> dict[str, str]:
    return {"b64": base64.b64encode(data).decode()}


def frames_request(**extra: object) -> StepsRequest:
    frames, _ = recording()
    return StepsRequest.model_validate({"frames": [b64(png(frame)) for frame in frames], **extra})


def thumbnail_bytes(thumbnail: Thumbnail) -> bytes:
    if thumbnail.uri.startswith("data:image/png;base64,"):
        return base64.b64decode(thumbnail.uri.partition(",")[2])
    assert thumbnail.uri.startswith("file://")
    return Path(unquote(urlsplit(thumbnail.uri).path)).read_bytes()


def test_steps_from_base64_frames(artifact_dir: SetArtifacts) -> None:
    reply = make_provider().detect_steps(frames_request(), "opencv")
    _, script = recording()
    steps = reply.output.steps
    assert [(s.index, s.frame, s.action) for s in steps] == [(i, s.frame, s.action) for i, s in enumerate(script)]
    assert steps[0].box[:2] == (460, 190) and steps[3].box == (0, 0, 640, 400)
    StepsOutput.model_validate(reply.output.model_dump(mode="json"))  # JSON all the way


def test_captions_hold_what_was_typed(artifact_dir: SetArtifacts) -> None:
    require_ocr()
    click, typed, scroll, navigate = make_provider().detect_steps(frames_request(), "opencv").output.steps
    assert typed.caption is not None and TYPED in typed.caption
    assert click.caption == "Save"
    assert navigate.caption is not None and "Welcome" in navigate.caption
    assert scroll.caption is not None and len(scroll.caption) <= 200


def test_without_ocr_captions_are_null(artifact_dir: SetArtifacts, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("stepper.providers.engines.vision.best_engine", lambda: None)
    steps = make_provider().detect_steps(frames_request(), "opencv").output.steps
    assert len(steps) == 4 and all(step.caption is None for step in steps)
    assert all(step.thumbnail is not None for step in steps)


def test_thumbnails_are_stored_or_inline(artifact_dir: SetArtifacts) -> None:
    directory = artifact_dir(0)  # nothing inline: every thumbnail is a file
    stored = make_provider().detect_steps(frames_request(), "opencv").output.steps
    for step in stored:
        assert step.thumbnail is not None and step.thumbnail.format == "png"
        path = Path(unquote(urlsplit(step.thumbnail.uri).path))
        assert path.is_file() and path.is_relative_to(directory)
        data = path.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        assert (step.thumbnail.bytes, step.thumbnail.sha256) == (len(data), hashlib.sha256(data).hexdigest())
        assert max(decoded(data).shape[:2]) <= 320
    artifact_dir(1024 * 1024)  # everything inline
    inline = make_provider().detect_steps(frames_request(), "opencv").output.steps
    for before, after in zip(stored, inline, strict=True):
        assert before.thumbnail is not None and after.thumbnail is not None
        assert after.thumbnail.uri.startswith("data:image/png;base64,")
        assert after.thumbnail.sha256 == before.thumbnail.sha256  # the same picture, carried differently
        assert hashlib.sha256(thumbnail_bytes(after.thumbnail)).hexdigest() == after.thumbnail.sha256


def test_threshold_from_the_request(artifact_dir: SetArtifacts) -> None:
    steps = make_provider().detect_steps(frames_request(threshold=0.1), "opencv").output.steps
    assert [(s.frame, s.action) for s in steps] == [(10, "scroll"), (13, "navigate")]  # only the large changes


def test_steps_from_a_video(artifact_dir: SetArtifacts, tmp_path: Path) -> None:
    frames, script = recording()
    video = write_video(tmp_path / "recording.mp4", frames)
    request = StepsRequest.model_validate({"video": b64(video)})
    steps = make_provider().detect_steps(request, "opencv").output.steps
    assert [(s.frame, s.action) for s in steps] == [(s.frame, s.action) for s in script]
    whole = make_provider().detect_steps(request, "opencv").output
    assert (whole.frames_read, whole.seconds_read, whole.truncated) == (16, 3.0, False)  # 16 frames at 5 a second
    sampled = make_provider(options={"video_sample_fps": 1.25}).detect_steps(request, "opencv").output
    assert sampled.steps and all(step.frame % 4 == 0 for step in sampled.steps)  # frames 0, 4, 8, 12
    assert (sampled.frames_read, sampled.truncated) == (4, False)
    cut = make_provider(options={"max_video_frames": 5}).detect_steps(request, "opencv").output
    assert (cut.frames_read, cut.seconds_read, cut.truncated) == (5, 0.8, True)


def test_frames_go_through_the_image_limits(artifact_dir: SetArtifacts, monkeypatch: pytest.MonkeyPatch) -> None:
    provider = make_provider()
    with pytest.raises(InvalidRequest, match="paths are not accepted"):
        provider.detect_steps(StepsRequest.model_validate({"frames": [{"path": "/etc/hostname"}]}), "opencv")
    with pytest.raises(InvalidRequest, match="not an image"):
        provider.detect_steps(StepsRequest.model_validate({"frames": [b64(b"GIF89a, or not")]}), "opencv")
    small = current_settings().model_copy(update={"images": ImageSettings(max_pixels=1000)})
    monkeypatch.setattr("stepper.providers.opencv.current_settings", lambda: small)
    with pytest.raises(InvalidRequest, match="the limit is 1,000"):
        provider.detect_steps(frames_request(), "opencv")
    with pytest.raises(InvalidRequest, match="the limit is 1,000"):
        provider.analyse(VisionRequest.model_validate({"image": b64(png(blank()))}), "opencv")


def test_a_request_gives_frames_or_a_video() -> None:
    one = b64(png(blank()))
    with pytest.raises(ValidationError, match="give frames or a video, not both"):
        StepsRequest.model_validate({"frames": [one], "video": one})
    with pytest.raises(ValidationError, match=r"give frames .* or a video"):
        StepsRequest.model_validate({})
    with pytest.raises(ValidationError, match="frames"):
        StepsRequest.model_validate({"frames": []})
    assert StepsRequest.model_validate({"video": one}).frames == []


def test_analyse(artifact_dir: SetArtifacts) -> None:
    image = printed_text()
    paste(image, qr_code("stepper", 4), 480, 240)
    request = VisionRequest.model_validate(
        {"image": b64(png(image)), "features": ["faces", "people", "codes", "colors", "quality", "text"]}
    )
    output = make_provider().analyse(request, "opencv").output
    assert (output.width, output.height) == (640, 400)
    assert output.codes is not None and [(c.type, c.data) for c in output.codes] == [("QR_CODE", "stepper")]
    assert output.colors is not None and output.colors[0].hex == "#ffffff"
    assert output.quality is not None and output.quality.sharpness > 0
    assert output.faces is not None and output.people is not None and output.has_text is True
    VisionOutput.model_validate(output.model_dump(mode="json"))


def test_analyse_answers_only_what_was_asked(artifact_dir: SetArtifacts) -> None:
    default = make_provider().analyse(VisionRequest.model_validate({"image": b64(png(blank()))}), "opencv").output
    assert default.faces == [] and default.codes == [] and default.quality is not None
    assert default.has_text is None  # OCR runs only when "text" is asked for
    only_text = VisionRequest.model_validate({"image": b64(png(blank())), "features": ["text"]})
    output = make_provider().analyse(only_text, "opencv").output
    assert output.has_text is False and output.colors is None and output.faces is None


def test_available_here_and_why_not_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = ProviderSettings.model_validate(SPEC)
    assert import_provider(SPEC["class"]) is OpenCvProvider
    assert OpenCvProvider.kinds == {"steps", "vision"}
    assert OpenCvProvider.unavailable_reason(settings) is None
    monkeypatch.delattr(cv2, "CascadeClassifier")
    assert "OpenCV 5 dropped them" in (OpenCvProvider.unavailable_reason(settings) or "")
    monkeypatch.setitem(sys.modules, "cv2", None)  # as if OpenCV were not installed
    assert "install opencv-python-headless>=4.8,<5" in (OpenCvProvider.unavailable_reason(settings) or "")
