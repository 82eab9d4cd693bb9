"""Every built-in adapter implements the Protocol of each family it serves: checked by mypy (the annotated
tuples below) and at run time (the registry's load check)."""

from __future__ import annotations

import pytest

from stepper.contracts import (
    FAMILY_PROTOCOLS,
    ChatProvider,
    OcrProvider,
    Provider,
    ReportProvider,
    SpeechProvider,
    StepsProvider,
    VisionProvider,
)
from stepper.providers.cohere import CohereProvider
from stepper.providers.elevenlabs import ElevenLabsProvider
from stepper.providers.espeak import EspeakProvider
from stepper.providers.gemini import GeminiProvider
from stepper.providers.hf_space import HfSpaceProvider
from stepper.providers.mock import MockProvider
from stepper.providers.openai import OpenAIProvider
from stepper.providers.opencv import OpenCvProvider
from stepper.providers.tesseract import TesseractProvider

# mypy checks each class against the Protocol it is assigned to.
REPORT: tuple[type[ReportProvider], ...] = (
    OpenAIProvider,
    GeminiProvider,
    CohereProvider,
    HfSpaceProvider,
    MockProvider,
)
CHAT: tuple[type[ChatProvider], ...] = (OpenAIProvider, GeminiProvider, CohereProvider, HfSpaceProvider, MockProvider)
OCR: tuple[type[OcrProvider], ...] = (TesseractProvider, MockProvider)
STEPS: tuple[type[StepsProvider], ...] = (OpenCvProvider, MockProvider)
VISION: tuple[type[VisionProvider], ...] = (OpenCvProvider, MockProvider)
SPEECH: tuple[type[SpeechProvider], ...] = (ElevenLabsProvider, EspeakProvider, MockProvider)
ADAPTERS: tuple[type[Provider], ...] = (
    OpenAIProvider,
    GeminiProvider,
    CohereProvider,
    HfSpaceProvider,
    MockProvider,
    TesseractProvider,
    OpenCvProvider,
    ElevenLabsProvider,
    EspeakProvider,
)


@pytest.mark.parametrize("adapter", ADAPTERS, ids=lambda cls: cls.__name__)
def test_each_adapter_implements_the_protocol_of_every_kind_it_declares(adapter: type[Provider]) -> None:
    assert adapter.kinds, f"{adapter.__name__} serves no kind"
    for kind in adapter.kinds:
        assert issubclass(adapter, FAMILY_PROTOCOLS[kind]), (adapter.__name__, kind)
