"""What a provider is: one Protocol per family, and the base class every adapter starts from.

A provider is an adapter: it translates a validated request into a vendor's (or an engine's) call and the
answer back into the family's output model, raising errors from :mod:`stepper.errors`. Breakers, rate
limits, retries and attempt records wrap it from outside (:mod:`stepper.chain`); an adapter never retries.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, Protocol, TypeVar, runtime_checkable

from pydantic import BaseModel

from stepper.schemas import (
    ChatOutput,
    ChatRequest,
    Kind,
    OcrOutput,
    OcrRequest,
    ReportOutput,
    ReportRequest,
    SpeechOutput,
    SpeechRequest,
    StepsOutput,
    StepsRequest,
    VisionOutput,
    VisionRequest,
)
from stepper.secrets import resolve_secret
from stepper.settings import ProviderSettings

OutputT_co = TypeVar("OutputT_co", bound=BaseModel, covariant=True)


@dataclass(frozen=True)
class Reply(Generic[OutputT_co]):
    """A provider's answer: the output, and what it cost (tokens, characters...) when the vendor says."""

    output: OutputT_co
    usage: dict[str, int] = field(default_factory=dict)


class Provider:
    """Base of every adapter: holds its settings and says whether it can run here."""

    #: The families this provider serves.
    kinds: ClassVar[frozenset[Kind]] = frozenset()

    def __init__(self, settings: ProviderSettings) -> None:
        self.settings = settings

    @classmethod
    def unavailable_reason(cls, settings: ProviderSettings) -> str | None:
        """Why this provider cannot run here (a missing key, binary or extra), or None when it can."""
        if settings.options.get("requires_base_url") and not settings.base_url:
            variable = f"STEPPER_{settings.name.upper()}_BASE_URL"
            return f"no base URL: set {variable} (or base_url in stepper_providers) to where it is served"
        if settings.api_key_env and resolve_secret(settings.api_key_env) is None:
            return f"{settings.api_key_env} is not set (nor {settings.api_key_env}_FILE)"
        return None

    @classmethod
    def details(cls, settings: ProviderSettings) -> dict[str, Any]:
        """What a local engine has installed, cheap to ask (``{"languages": [...]}`` for OCR, say), for
        ``stepper providers`` and the capabilities API; ``{}`` unless the adapter says more. May raise
        ``StepperError`` when the engine cannot say."""
        del settings
        return {}

    @property
    def api_key(self) -> str | None:
        return resolve_secret(self.settings.api_key_env) if self.settings.api_key_env else None


@runtime_checkable
class VoiceLister(Protocol):
    """Speech providers that can say which voices they have (``stepper voices``, ``stepper.voices``)."""

    def voices(self) -> list[dict[str, str | None]]: ...


@runtime_checkable
class ReportProvider(Protocol):
    def generate_report(self, request: ReportRequest, model: str) -> Reply[ReportOutput]: ...


@runtime_checkable
class ChatProvider(Protocol):
    def complete(self, request: ChatRequest, model: str) -> Reply[ChatOutput]: ...


@runtime_checkable
class OcrProvider(Protocol):
    def read(self, request: OcrRequest, model: str) -> Reply[OcrOutput]: ...


@runtime_checkable
class StepsProvider(Protocol):
    def detect_steps(self, request: StepsRequest, model: str) -> Reply[StepsOutput]: ...


@runtime_checkable
class VisionProvider(Protocol):
    def analyse(self, request: VisionRequest, model: str) -> Reply[VisionOutput]: ...


@runtime_checkable
class SpeechProvider(Protocol):
    def synthesise(self, request: SpeechRequest, model: str) -> Reply[SpeechOutput]: ...


#: The Protocol an adapter must implement for each kind it serves (the registry checks on load).
FAMILY_PROTOCOLS: dict[Kind, type] = {
    "report": ReportProvider,
    "chat": ChatProvider,
    "ocr": OcrProvider,
    "steps": StepsProvider,
    "vision": VisionProvider,
    "speech": SpeechProvider,
}
