"""Request and output models of the six task families: the public JSON contract."""

from stepper.schemas.chat import ChatOutput, ChatRequest
from stepper.schemas.common import KINDS, Attempt, Image, Kind, Outcome, TaskResult, describe_validation_error
from stepper.schemas.ocr import OcrOutput, OcrRequest
from stepper.schemas.report import ReportOutput, ReportRequest
from stepper.schemas.speech import SpeechOutput, SpeechRequest
from stepper.schemas.steps import StepsOutput, StepsRequest
from stepper.schemas.vision import VisionOutput, VisionRequest

__all__ = [
    "KINDS",
    "Attempt",
    "ChatOutput",
    "ChatRequest",
    "Image",
    "Kind",
    "OcrOutput",
    "OcrRequest",
    "Outcome",
    "ReportOutput",
    "ReportRequest",
    "SpeechOutput",
    "SpeechRequest",
    "StepsOutput",
    "StepsRequest",
    "TaskResult",
    "VisionOutput",
    "VisionRequest",
    "describe_validation_error",
]
