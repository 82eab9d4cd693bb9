"""Steps in screen recordings and analysis of one image, with OpenCV on the worker's own CPU.

The detection lives in :mod:`stepper.providers.engines.steps` and :mod:`stepper.providers.engines.vision`; this
adapter loads the images (or the video) within the configured limits, one frame at a time, captions each step
with what OCR reads in its changed region when tesseract is installed, and stores each step's thumbnail as an
artifact.
The engines import OpenCV, so they are imported on first call: without OpenCV this module still imports and
says why it cannot run. Options: ``ocr_lang`` (``eng``); for videos ``max_video_frames`` (3000 frames sampled),
``max_video_seconds`` (600 seconds read) and ``video_sample_fps`` (10 frames sampled a second of video), see
:class:`stepper.settings.VideoSettings`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, ClassVar

from pydantic import ValidationError

from stepper.config import current_settings
from stepper.contracts import Provider, Reply
from stepper.errors import ConfigError
from stepper.infra.artifacts import artifact_store
from stepper.providers.engines.failures import input_specific
from stepper.providers.media.images import load_image, read_image
from stepper.schemas import Kind, StepsOutput, StepsRequest, VisionOutput, VisionRequest
from stepper.schemas.common import describe_validation_error
from stepper.schemas.steps import Step, Thumbnail
from stepper.settings import ImageSettings, ProviderSettings, VideoSettings

if TYPE_CHECKING:
    from stepper.providers.engines.ocr import OcrEngine
    from stepper.providers.engines.steps import DetectedStep, Frame, StepThresholds

DEFAULT_OCR_LANG = "eng"
#: VideoSettings fields by the provider option that overrides them.
VIDEO_OPTIONS = {"max_frames": "max_video_frames", "max_seconds": "max_video_seconds", "sample_fps": "video_sample_fps"}


class OpenCvProvider(Provider):
    kinds: ClassVar[frozenset[Kind]] = frozenset({"steps", "vision"})

    @classmethod
    def unavailable_reason(cls, settings: ProviderSettings) -> str | None:
        try:
            import cv2
        except ImportError as exc:
            return f"OpenCV does not import ({exc}); install opencv-python-headless>=4.8,<5"
        if not hasattr(cv2, "CascadeClassifier") or not hasattr(cv2, "HOGDescriptor"):
            return f"OpenCV {cv2.__version__} has no Haar cascades or HOG (OpenCV 5 dropped them); pin <5"
        try:
            video_options(settings)
        except ConfigError as exc:
            return str(exc)
        return super().unavailable_reason(settings)

    @property
    def ocr_lang(self) -> str:
        return str(self.settings.options.get("ocr_lang", DEFAULT_OCR_LANG))

    def detect_steps(self, request: StepsRequest, model: str) -> Reply[StepsOutput]:
        from stepper.providers.engines import steps as engine
        from stepper.providers.engines.vision import reader

        images = current_settings().images
        thresholds = engine.StepThresholds()
        if request.threshold is not None:
            thresholds = engine.StepThresholds(change_ratio=request.threshold)
        ocr = reader(self.ocr_lang)
        if request.video is None:
            with input_specific("OpenCV"):
                steps = self._steps(_decoded(request, images), thresholds, ocr)
                return Reply(StepsOutput(steps=steps, frames_read=len(request.frames)))
        limits = self.video_limits(request)
        video = load_image(request.video, images)
        with (
            input_specific("OpenCV"),
            engine.open_video(
                video, limits.max_frames, images.max_pixels, limits.max_seconds, limits.sample_fps
            ) as frames,
        ):
            steps = self._steps(iter(frames), thresholds, ocr)
            return Reply(
                StepsOutput(
                    steps=steps,
                    frames_read=frames.frames_read,
                    seconds_read=frames.seconds_read,
                    truncated=frames.truncated,
                )
            )

    def video_limits(self, request: StepsRequest) -> VideoSettings:
        """The provider's video options over the defaults, lowered by the request's own bounds.

        Raises ConfigError when an option is out of range.
        """
        limits = video_options(self.settings)
        return limits.model_copy(
            update={
                "max_frames": min(limits.max_frames, request.max_frames or limits.max_frames),
                "max_seconds": min(limits.max_seconds, request.max_seconds or limits.max_seconds),
            }
        )

    def _steps(
        self, frames: Iterator[tuple[int, Frame]], thresholds: StepThresholds, ocr: OcrEngine | None
    ) -> list[Step]:
        from stepper.providers.engines.steps import detect_steps

        return [self._step(index, found, ocr) for index, found in enumerate(detect_steps(frames, thresholds))]

    def _step(self, index: int, found: DetectedStep, ocr: OcrEngine | None) -> Step:
        from stepper.providers.engines.steps import caption, crop, thumbnail_png

        thumbnail = thumbnail_png(crop(found.screen, found.box))
        ref = artifact_store().save(thumbnail, "png", "image/png")
        return Step(
            index=index,
            frame=found.frame,
            box=found.box,
            change_ratio=found.change_ratio,
            action=found.action,
            caption=caption(ocr, self.ocr_lang, found.screen, found.box) if ocr is not None else None,
            thumbnail=Thumbnail(uri=ref.uri, bytes=ref.bytes, sha256=ref.sha256, format="png"),
        )

    def analyse(self, request: VisionRequest, model: str) -> Reply[VisionOutput]:
        from stepper.providers.engines.vision import analyse_image

        images = current_settings().images
        pixels = read_image(request.image, images, "image")
        with input_specific("OpenCV"):
            return Reply(analyse_image(pixels, request.features, self.ocr_lang))


def video_options(settings: ProviderSettings) -> VideoSettings:
    """The provider's ``max_video_frames``, ``max_video_seconds`` and ``video_sample_fps`` over VideoSettings'
    defaults. Raises ConfigError naming the option out of range."""
    options = settings.options
    given = {field: options[option] for field, option in VIDEO_OPTIONS.items() if options.get(option) is not None}
    try:
        return VideoSettings.model_validate(given)
    except ValidationError as exc:
        raise ConfigError(f"{settings.name} video options: {describe_validation_error(exc)}") from None


def _decoded(request: StepsRequest, images: ImageSettings) -> Iterator[tuple[int, Frame]]:
    """Each frame decoded when the detector reaches it: a long recording is never held in memory whole."""
    for number, image in enumerate(request.frames):
        yield number, read_image(image, images, f"frames.{number}")
