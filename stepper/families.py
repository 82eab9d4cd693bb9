"""The six task families: for each kind, its request and output models and how a provider is called.

This table is the one place that knows which Protocol method serves which kind; the chain executor and
the tasks stay generic.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from stepper.contracts import (
    ChatProvider,
    OcrProvider,
    Reply,
    ReportProvider,
    SpeechProvider,
    StepsProvider,
    VisionProvider,
)
from stepper.errors import InvalidRequest
from stepper.providers.llm.tokens import estimate_message_tokens, estimate_tokens
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
    describe_validation_error,
)


@dataclass(frozen=True)
class Family:
    kind: Kind
    request_model: type[BaseModel]
    output_model: type[BaseModel]
    #: Calls the family's Protocol method (stepper.contracts) on a provider instance: (provider, request, model).
    invoke: Callable[[Any, Any, str], Reply[BaseModel]]
    #: Tokens a request is expected to use, reserved against a provider's tokens-per-minute limit.
    estimate_tokens: Callable[[Any], int] = lambda request: 0

    def parse(self, kwargs: Mapping[str, Any]) -> BaseModel:
        """Validate a task's JSON keyword arguments, or raise InvalidRequest naming each bad field."""
        try:
            return self.request_model.model_validate(dict(kwargs))
        except ValidationError as exc:
            raise InvalidRequest(f"invalid {self.kind} request: {describe_validation_error(exc)}") from None


def _chat_tokens(request: ChatRequest) -> int:
    """Reserved against a provider's tokens-per-minute limit (the messages, tool calls and declared tools); the
    vendor's usage figures settle it."""
    prompt = sum(estimate_message_tokens(message.budget_text()) for message in request.messages)
    declared = [tool.model_dump(mode="json") for tool in request.tools or ()]
    tools = estimate_tokens(json.dumps(declared)) if declared else 0
    return prompt + tools + (request.max_tokens or 0)


def _report_tokens(request: ReportRequest) -> int:
    commit = request.commit
    return estimate_tokens(commit.message + "".join(file.path + (file.patch or "") for file in commit.files))


def _report(provider: ReportProvider, request: ReportRequest, model: str) -> Reply[ReportOutput]:
    return provider.generate_report(request, model)


def _chat(provider: ChatProvider, request: ChatRequest, model: str) -> Reply[ChatOutput]:
    return provider.complete(request, model)


def _ocr(provider: OcrProvider, request: OcrRequest, model: str) -> Reply[OcrOutput]:
    return provider.read(request, model)


def _steps(provider: StepsProvider, request: StepsRequest, model: str) -> Reply[StepsOutput]:
    return provider.detect_steps(request, model)


def _vision(provider: VisionProvider, request: VisionRequest, model: str) -> Reply[VisionOutput]:
    return provider.analyse(request, model)


def _speech(provider: SpeechProvider, request: SpeechRequest, model: str) -> Reply[SpeechOutput]:
    return provider.synthesise(request, model)


FAMILIES: dict[Kind, Family] = {
    family.kind: family
    for family in (
        Family("report", ReportRequest, ReportOutput, _report, _report_tokens),
        Family("chat", ChatRequest, ChatOutput, _chat, _chat_tokens),
        Family("ocr", OcrRequest, OcrOutput, _ocr),
        Family("steps", StepsRequest, StepsOutput, _steps),
        Family("vision", VisionRequest, VisionOutput, _vision),
        Family("speech", SpeechRequest, SpeechOutput, _speech),
    )
}
