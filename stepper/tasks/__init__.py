"""The six public tasks. Their names (``stepper.chat``...) and JSON keyword arguments are a public contract."""

from stepper.tasks.callbacks import deliver_webhook
from stepper.tasks.chat import chat
from stepper.tasks.ocr import ocr
from stepper.tasks.report import report
from stepper.tasks.speech import speech
from stepper.tasks.steps import steps
from stepper.tasks.vision import vision
from stepper.tasks.voices import voices

__all__ = ["chat", "deliver_webhook", "ocr", "report", "speech", "steps", "vision", "voices"]
