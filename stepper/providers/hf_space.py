"""A Hugging Face Space (any Gradio app) through Gradio's HTTP API: a free last resort for chat.

Per Gradio's guide "Querying Gradio Apps with Curl" and its server (``gradio/routes.py``): ``POST
{base_url}/gradio_api/call/{api_name}`` with ``{"data": [inputs...]}`` answers ``{"event_id": ...}``, then ``GET
{base_url}/gradio_api/call/{api_name}/{event_id}`` streams SSE: ``generating`` (the outputs so far), ``heartbeat``,
and at last ``complete`` (the outputs) or ``error``. The answer is the first output, which must be a string.

``base_url`` is required: the app's own address ``https://<owner>-<space>.hf.space``, not the huggingface.co
page. ``api_key_env`` (HF_TOKEN) is sent as a bearer token when it is set; only private Spaces need one.
Options: ``api_name`` (``chat``, a ChatInterface's endpoint); ``input``: ``prompt`` sends the conversation as
one string, ``messages`` sends it as ``[{"role", "content"}]``; ``extra_inputs``: values for the endpoint's
further inputs, in order (a ChatInterface's additional inputs); ``api_prefix``: ``/gradio_api``, or ``""`` for
Gradio 4 apps. A Space picks its own output length and temperature: ``max_tokens`` and ``temperature`` are
not sent.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

from stepper.errors import TruncatedOutput, Unavailable, UnsupportedInput
from stepper.providers.llm.base import LlmProvider
from stepper.providers.llm.call import LlmAnswer, LlmCall
from stepper.providers.vendor_errors import MESSAGE_CHARS
from stepper.schemas.chat import Message
from stepper.settings import ProviderSettings

INPUT_MODES = ("prompt", "messages")
LABELS = {"system": "System", "user": "User", "assistant": "Assistant"}


class HfSpaceProvider(LlmProvider):
    #: Not callable: a Space is served from its own host, so ``unavailable_reason`` insists on ``base_url``.
    default_base_url = "https://huggingface.co/spaces"

    @classmethod
    def unavailable_reason(cls, settings: ProviderSettings) -> str | None:
        if not settings.base_url:
            variable = f"STEPPER_{settings.name.upper()}_BASE_URL"
            return (
                f"no Space URL: set {variable} (or base_url in stepper_providers) to https://<owner>-<space>.hf.space"
            )
        if settings.options.get("input", "prompt") not in INPUT_MODES:
            return f"options.input must be one of {', '.join(INPUT_MODES)}"
        # The token is optional (public Spaces need none), so the base class checks everything but the key.
        return super().unavailable_reason(settings.model_copy(update={"api_key_env": None}))

    def send(self, call: LlmCall) -> LlmAnswer:
        """The same two requests as a stream; the partial outputs are simply passed over."""
        for piece in self._run(call):
            if isinstance(piece, LlmAnswer):
                return piece
        raise TruncatedOutput(f"{self.settings.name} ended its event stream without complete or error")

    def send_streaming(self, call: LlmCall) -> Iterator[str | LlmAnswer]:
        """Each ``generating`` event carries the whole text so far; relay what two events agree on.

        Some Spaces decorate a partial answer (a trailing cursor such as "▌"), so the newest text alone is not
        yet final: the prefix it shares with the previous one is. A Space that rewrites text already relayed
        cannot be streamed faithfully, and its answer is refused rather than delivered inconsistent.
        """
        sent = previous = ""
        for piece in self._run(call):
            if isinstance(piece, LlmAnswer):
                if not piece.text.startswith(sent):
                    raise TruncatedOutput(f"{self.settings.name} rewrote the text it had already streamed")
                if len(piece.text) > len(sent):
                    yield piece.text[len(sent) :]
                yield piece
                return
            stable = os.path.commonprefix([previous, piece])  # noqa: RUF071  (texts, not paths: char by char is meant)
            previous = piece
            if len(stable) > len(sent) and stable.startswith(sent):
                yield stable[len(sent) :]
                sent = stable
        raise TruncatedOutput(f"{self.settings.name} ended its event stream without complete or error")

    def _run(self, call: LlmCall) -> Iterator[str | LlmAnswer]:
        """Submit the call, then yield each partial text and at last the answer (or raise on ``error``)."""
        options = self.settings.options
        path = f"{options.get('api_prefix', '/gradio_api')}/call/{str(options.get('api_name', 'chat')).strip('/')}"
        inputs = [self._conversation(call.messages), *options.get("extra_inputs", ())]
        started = self.http.post_json(path, {"data": inputs}, self.auth_headers())
        event_id = started.get("event_id") if isinstance(started, dict) else None
        if not isinstance(event_id, str) or not event_id:
            raise TruncatedOutput(f"{self.settings.name} accepted the call without an event_id")
        for event in self.http.stream("GET", f"{path}/{quote(event_id, safe='')}", None, self.auth_headers()):
            if event.event == "generating":
                text = self._first_output(event.data)
                if isinstance(text, str):
                    yield text
            elif event.event == "complete":
                text = self._first_output(event.data)
                if not isinstance(text, str):
                    raise UnsupportedInput(f"{self.settings.name}'s first output is not text; check options.api_name")
                yield LlmAnswer(text, "stop")
                return
            elif event.event == "error":  # a sleeping, overloaded or crashed Space: worth another try later
                raise Unavailable(f"{self.settings.name} failed to answer: {self._error_detail(event.data)}")

    def _conversation(self, messages: list[Message]) -> Any:
        if self.settings.options.get("input", "prompt") == "messages":
            return [{"role": m.role, "content": m.content} for m in messages]
        if len(messages) == 1:
            return messages[0].content
        return "\n\n".join(f"{LABELS[m.role]}: {m.content}" for m in messages)

    def _first_output(self, data: str) -> Any:
        try:
            outputs = json.loads(data)
        except json.JSONDecodeError:
            raise TruncatedOutput(f"{self.settings.name} sent outputs that are not JSON") from None
        return outputs[0] if isinstance(outputs, list) and outputs else None

    def _error_detail(self, data: str) -> str:
        """Gradio sends ``null``, a message, or ``{"error": message-or-null, ...}`` (when the app shows errors)."""
        try:
            value = json.loads(data)
        except json.JSONDecodeError:
            value = data
        if isinstance(value, dict):
            value = value.get("error")
        return self.http.redact(str(value))[:MESSAGE_CHARS] if value else "no details (the Space hides errors)"
