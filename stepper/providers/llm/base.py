"""The vendor-neutral LLM adapter: chat and report in terms of one vendor call.

A vendor module implements ``send`` (one request, one answer) and ``send_streaming`` (deltas, then the final
answer); everything else (budgets, the report prompt and its strict parsing, finish reasons, streaming to
producers, optional parameters a server refused, request features a vendor lacks, the usage of a cancelled
call) is written once here.

Features of a chat request the answer depends on (``tools``, a JSON ``response_format``, ``logprobs``,
``stop``) are served only by an adapter that declares them in ``features``; any other makes this provider
pass (``UnsupportedInput``: the chain moves on). Optional parameters a server refused are left out from then
on, unless the request needs them (then the provider passes too).
"""

from __future__ import annotations

import logging
from abc import abstractmethod
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
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
from stepper.providers.llm.call import Feature, FinishReason, LlmAnswer, LlmCall, ToolCallDelta, needed_features
from stepper.providers.llm.report_prompt import build_report_prompt, parse_report, report_schema
from stepper.providers.llm.tokens import estimate_message_tokens, estimate_tokens
from stepper.schemas import ChatOutput, ChatRequest, Kind, ReportOutput, ReportRequest
from stepper.schemas.chat import JsonSchemaFormat, Message, ResponseFormat
from stepper.settings import ProviderSettings

log = logging.getLogger(__name__)

#: Defaults for reports, as the commit-report service used them; ``options`` may override both.
REPORT_TEMPERATURE = 1.0
REPORT_MAX_TOKENS = 4096


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
    #: The chat features this adapter maps to its vendor; a request needing another passes this provider by.
    features: ClassVar[frozenset[Feature]] = frozenset()

    def __init__(self, settings: ProviderSettings) -> None:
        super().__init__(settings)
        self.http = self.http_client(settings, self.default_base_url, self.api_key)

    def auth_headers(self) -> dict[str, str]:
        """The key in the vendor's header; none when no key is configured (self-hosted, public Spaces)."""
        key = self.api_key
        return {self.key_header: f"{self.key_prefix}{key}"} if key else {}

    def refused(self, call: LlmCall) -> frozenset[str]:
        """The optional parameters this provider's model refused lately, fleet-wide: leave them out. One the
        call cannot do without makes this provider pass (``UnsupportedInput``) before anything is sent."""
        refused = capabilities().refused(self.settings.name, call.model) & self.optional_parameters
        if needed := refused & call.required:
            raise UnsupportedInput(
                f"{self.settings.name} refused {', '.join(sorted(needed))} for {call.model} lately, "
                "and this request needs it"
            )
        return refused

    @contextmanager
    def refusals(self, call: LlmCall, sent: Mapping[str, Any]) -> Iterator[None]:
        """Around one vendor call with payload ``sent``: a refused optional parameter is remembered fleet-wide
        (the chain then tries once more, without it); a refused parameter the call cannot do without means
        this provider cannot serve the request (``UnsupportedInput``: the chain moves on)."""
        try:
            yield
        except UnsupportedParameter as exc:
            optional = exc.param in self.optional_parameters and exc.param in sent
            if not optional:
                raise UnsupportedInput(str(exc)) from None
            log.warning("%s refused %r for %s; leaving it out from now on", self.settings.name, exc.param, call.model)
            capabilities().remember(self.settings.name, call.model, exc.param)
            if exc.param in call.required:
                raise UnsupportedInput(f"{exc}; this request needs it") from None
            raise

    @abstractmethod
    def send(self, call: LlmCall) -> LlmAnswer:
        """One request to the vendor, one complete answer."""

    @abstractmethod
    def send_streaming(self, call: LlmCall) -> Iterator[str | ToolCallDelta | LlmAnswer]:
        """Yield text deltas and tool-call fragments as they arrive, then the complete answer; a stream that
        ends early raises."""

    def complete(self, request: ChatRequest, model: str) -> Reply[ChatOutput]:
        if lacking := needed_features(request) - self.features:
            raise UnsupportedInput(
                f"{self.settings.name} cannot serve {', '.join(sorted(lacking))}; a provider that can is needed"
            )
        budget = self.settings.budget_for(model)
        max_tokens = min(request.max_tokens or budget.output_tokens, budget.output_tokens)
        messages, dropped = fit_conversation(request.messages, budget.input_tokens, max_tokens)
        call = LlmCall.for_chat(request, model, messages, max_tokens)
        sink = current_sink.get() if request.stream else None
        answer = self._send(call) if sink is None else self._stream_to(sink, call)
        if answer.finish_reason == "content_filter":
            raise ContentRejected(f"{self.settings.name} refused the conversation (content filter)")
        if answer.finish_reason == "tool_calls" and not answer.tool_calls and not answer.text:
            raise TruncatedOutput(f"{self.settings.name} finished with tool calls but sent neither calls nor text")
        output = ChatOutput(
            message={
                "role": "assistant",
                "content": answer.text if answer.text or not answer.tool_calls else None,
                "tool_calls": answer.tool_calls or None,
            },
            finish_reason=_finish_of(answer),
            logprobs=answer.logprobs,
        )
        return Reply(output, {**answer.usage, "truncated_messages": dropped})

    def generate_report(self, request: ReportRequest, model: str) -> Reply[ReportOutput]:
        budget = self.settings.budget_for(model)
        prompt = build_report_prompt(request, budget.input_tokens)
        call = LlmCall(
            model,
            [Message(role="system", content=prompt.system), Message(role="user", content=prompt.user)],
            int(self.settings.options.get("report_max_tokens", REPORT_MAX_TOKENS)),
            float(self.settings.options.get("report_temperature", REPORT_TEMPERATURE)),
            ResponseFormat(
                type="json_schema",
                json_schema=JsonSchemaFormat(name="commit_report", json_schema=report_schema(), strict=True),
            ),
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
                if not parts and piece:
                    self.http.answer_started()
                if isinstance(piece, ToolCallDelta):
                    sink.tool_call(piece.index, piece.id, piece.name, piece.arguments, piece.extra_content)
                    parts.append(piece.arguments)
                elif piece:
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


def _finish_of(answer: LlmAnswer) -> Literal["stop", "length", "tool_calls"]:
    """An answer's finish as OpenAI states it: ``tool_calls`` when it calls tools (Gemini says STOP then),
    ``stop`` for text a server said was tool calls but sent as text."""
    if answer.finish_reason == "length":
        return "length"
    return "tool_calls" if answer.tool_calls else "stop"


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
    return sum(estimate_message_tokens(message.budget_text()) for message in call.messages)
