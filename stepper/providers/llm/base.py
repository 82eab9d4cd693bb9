"""The vendor-neutral LLM adapter: chat and report in terms of one vendor call.

A vendor module implements ``send`` (one request, one answer) and ``send_streaming`` (deltas, then the final
answer); everything else (budgets, the report prompt and its strict parsing, finish reasons, streaming to
producers, optional parameters a server refused, the usage of a cancelled call) is written once here.
"""

from __future__ import annotations

import logging
from abc import abstractmethod
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from typing import Any, ClassVar, Literal

from stepper.contracts import Provider, Reply
from stepper.errors import (
    Cancelled,
    ContentRejected,
    ProviderError,
    TruncatedOutput,
    UnsupportedInput,
    UnsupportedParameter,
)
from stepper.infra.capabilities import capabilities
from stepper.infra.streams import DeltaSink, current_sink
from stepper.providers.http import HttpClient
from stepper.providers.llm.budget import fit_conversation
from stepper.providers.llm.report_prompt import build_report_prompt, parse_report, report_schema
from stepper.providers.llm.tokens import estimate_message_tokens, estimate_tokens
from stepper.schemas import ChatOutput, ChatRequest, Kind, ReportOutput, ReportRequest
from stepper.schemas.chat import Message
from stepper.settings import ProviderSettings

log = logging.getLogger(__name__)

FinishReason = Literal["stop", "length", "content_filter"]
#: Defaults for reports, as the commit-report service used them; ``options`` may override both.
REPORT_TEMPERATURE = 1.0
REPORT_MAX_TOKENS = 4096


@dataclass(frozen=True)
class LlmCall:
    """One vendor-neutral request."""

    model: str
    messages: list[Message]
    max_tokens: int
    temperature: float | None = None
    json_schema: dict[str, Any] | None = None


@dataclass(frozen=True)
class LlmAnswer:
    text: str
    finish_reason: FinishReason
    usage: dict[str, int] = field(default_factory=dict)


class LlmProvider(Provider):
    kinds: ClassVar[frozenset[Kind]] = frozenset({"chat", "report"})
    #: Where the vendor's API lives unless settings (or STEPPER_<NAME>_BASE_URL) say otherwise.
    default_base_url: ClassVar[str]
    #: A vendor whose errors need more than the status code to classify brings its own subclass.
    http_client: ClassVar[type[HttpClient]] = HttpClient
    #: How the key travels: a bearer token unless the vendor says otherwise.
    key_header: ClassVar[str] = "Authorization"
    key_prefix: ClassVar[str] = "Bearer "
    #: Top-level request fields the adapter can do without when a server refuses them (see :meth:`refused`).
    optional_parameters: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, settings: ProviderSettings) -> None:
        super().__init__(settings)
        self.http = self.http_client(settings, self.default_base_url, self.api_key)

    def auth_headers(self) -> dict[str, str]:
        """The key in the vendor's header; none when no key is configured (self-hosted, public Spaces)."""
        key = self.api_key
        return {self.key_header: f"{self.key_prefix}{key}"} if key else {}

    def refused(self, model: str) -> frozenset[str]:
        """The optional parameters this provider's ``model`` refused lately, fleet-wide: leave them out."""
        return capabilities().refused(self.settings.name, model) & self.optional_parameters

    @contextmanager
    def refusals(self, model: str, sent: Mapping[str, Any]) -> Iterator[None]:
        """Around one vendor call with payload ``sent``: a refused optional parameter is remembered fleet-wide
        (the chain then tries once more, without it); a refused parameter the call cannot do without means
        this provider cannot serve the request (``UnsupportedInput``: the chain moves on)."""
        try:
            yield
        except UnsupportedParameter as exc:
            if exc.param not in self.optional_parameters or exc.param not in sent:
                raise UnsupportedInput(str(exc)) from None
            log.warning("%s refused %r for %s; leaving it out from now on", self.settings.name, exc.param, model)
            capabilities().remember(self.settings.name, model, exc.param)
            raise

    @abstractmethod
    def send(self, call: LlmCall) -> LlmAnswer:
        """One request to the vendor, one complete answer."""

    @abstractmethod
    def send_streaming(self, call: LlmCall) -> Iterator[str | LlmAnswer]:
        """Yield text deltas as they arrive, then the complete answer; a stream that ends early raises."""

    def complete(self, request: ChatRequest, model: str) -> Reply[ChatOutput]:
        budget = self.settings.budget_for(model)
        max_tokens = min(request.max_tokens or budget.output_tokens, budget.output_tokens)
        messages, dropped = fit_conversation(request.messages, budget.input_tokens, max_tokens)
        call = LlmCall(model, messages, max_tokens, request.temperature)
        sink = current_sink.get() if request.stream else None
        answer = self._send(call) if sink is None else self._stream_to(sink, call)
        if answer.finish_reason == "content_filter":
            raise ContentRejected(f"{self.settings.name} refused the conversation (content filter)")
        output = ChatOutput(message={"role": "assistant", "content": answer.text}, finish_reason=answer.finish_reason)
        return Reply(output, {**answer.usage, "truncated_messages": dropped})

    def generate_report(self, request: ReportRequest, model: str) -> Reply[ReportOutput]:
        budget = self.settings.budget_for(model)
        prompt = build_report_prompt(request, budget.input_tokens)
        call = LlmCall(
            model,
            [Message(role="system", content=prompt.system), Message(role="user", content=prompt.user)],
            int(self.settings.options.get("report_max_tokens", REPORT_MAX_TOKENS)),
            float(self.settings.options.get("report_temperature", REPORT_TEMPERATURE)),
            report_schema(),
        )
        answer = self._send(call)
        if answer.finish_reason == "content_filter":
            raise ContentRejected(f"{self.settings.name} refused to report on this commit (content filter)")
        if answer.finish_reason == "length":
            raise TruncatedOutput(f"{self.settings.name} hit {call.max_tokens} output tokens before the report ended")
        return Reply(
            parse_report(answer.text, self.settings.name),
            {**answer.usage, "trimmed_patches": len(prompt.trimmed_paths)},
        )

    def _send(self, call: LlmCall) -> LlmAnswer:
        try:
            return self.send(call)
        except Cancelled as exc:
            exc.partial_usage = {"input_tokens": _prompt_tokens(call)}
            raise

    def _stream_to(self, sink: DeltaSink, call: LlmCall) -> LlmAnswer:
        """Relay deltas; if the stream breaks after the first one, tell readers to discard it and re-raise.
        The first text is the first byte of the answer, as far as ``first_token_timeout_s`` is concerned."""
        parts: list[str] = []
        try:
            for piece in self.send_streaming(call):
                if isinstance(piece, LlmAnswer):
                    return piece
                if piece:
                    if not parts:
                        self.http.answer_started()
                    sink.delta(piece)
                    parts.append(piece)
        except Cancelled as exc:  # the task ends here: no other provider restarts the answer
            exc.partial_usage = {"input_tokens": _prompt_tokens(call), "output_tokens": estimate_tokens("".join(parts))}
            raise
        except ProviderError as exc:
            if parts:
                sink.reset(f"{self.settings.name} failed mid-answer ({type(exc).__name__}); restarting elsewhere")
            raise
        if parts:
            sink.reset(f"{self.settings.name} ended its stream without finishing; restarting elsewhere")
        raise TruncatedOutput(f"{self.settings.name} ended its stream before the answer was complete")


def finish_reason(
    provider: str, reason: Any, known: Mapping[str, FinishReason], failed: frozenset[str | None]
) -> FinishReason:
    """A vendor's finish reason in stepper's terms. One in ``failed`` means no usable answer (retryable); one
    stepper does not know, on an answer that is otherwise well-formed, is served as complete and logged once
    per provider and reason: a server's new spelling is not a fault of the provider."""
    if reason in known:
        return known[reason]
    if reason in failed:
        raise TruncatedOutput(f"{provider} finished with {reason!r}, not a complete answer")
    _log_unknown_finish(provider, str(reason))
    return "stop"


@cache
def _log_unknown_finish(provider: str, reason: str) -> None:
    log.warning("%s finished with %r, which stepper does not know; the answer is served as complete", provider, reason)


def _prompt_tokens(call: LlmCall) -> int:
    return sum(estimate_message_tokens(message.content) for message in call.messages)


def usage_of(input_tokens: Any, output_tokens: Any) -> dict[str, int]:
    """Usage in stepper's terms, from whatever the vendor reported (missing figures are left out)."""
    usage = {"input_tokens": input_tokens, "output_tokens": output_tokens}
    return {key: int(value) for key, value in usage.items() if isinstance(value, int | float)}
