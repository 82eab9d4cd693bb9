"""One fake ``POST /v1/chat/completions`` that answers as a chosen server family does.

``flavour`` picks the family; what each one sends was read from its own source:

========  ==============================================================================================
openai    errors ``{"error": {message, type, param, code}}``; a role chunk ``{"role", "content": "",
          "refusal": null}``, content chunks, a finish chunk with an empty delta, the usage chunk only when
          ``stream_options.include_usage`` (and ``"usage": null`` on the others), ``[DONE]``.
vllm      vllm/entrypoints/openai: ``{"error": {message, type: "BadRequestError", param, code: 400}}``
          (``legacy_errors``: v0.5's flat ``{"object": "error", ...}`` and its "you requested" wording); first
          chunk ``{"role", "content": ""}``, the finish reason on the last content chunk, an error inside the
          stream as ``data: {"error": ...}`` followed by ``[DONE]`` (serving_chat's generator).
tgi       text-generation-inference router: ``{"error": "...", "error_type": "validation"}`` with 422; every
          chunk carries ``role`` and ``"id": ""``, the last one (the EOS token) an empty ``content`` with
          ``finish_reason`` (``format(use_stop=true)``: "stop", "length", "stop_sequence"); any error, even
          validation, arrives inside the 200 stream as ``{"error": {message, "http_status_code": 422}}``, then
          ``[DONE]``; axum's keep-alive is an empty comment line ``:``.
llamacpp  tools/server: ``{"error": {code, message, type}}`` plus ``n_prompt_tokens``/``n_ctx`` for
          ``exceed_context_size_error``; an error before the first token is a plain answer (not a stream); first
          chunk ``{"role", "content": null}``, a finish chunk with ``{}``, usage and ``timings`` in a last chunk
          with empty ``choices`` when asked; an error midway is ``data: {"error": ...}`` and no ``[DONE]``.
ollama    openai/openai.go and middleware/openai.go: ``{"error": {message, type, param: null, code: null}}``;
          ``role`` on the first content chunk, a finish chunk with ``{}``, usage when asked, ``[DONE]``; an error
          midway loses its words (the middleware decodes ``{"error": ...}`` as an empty chunk) and the stream
          just stops.
litellm   the proxy's ``ProxyException``: ``{"error": {message: "litellm.<Exception>: ...", type: null, param:
          null, code: "<status>"}}``; chunks as OpenAI's; an error midway is ``data: {"error": ...}``, no
          ``[DONE]``.
========  ==============================================================================================

A prompt longer than ``context_tokens`` (one token per CJK character, one per three other characters) gets the
flavour's context-overflow answer. ``strict=True`` puts a FastAPI/pydantic validator in front: any field not in
``allowed_fields`` (``stream_options`` included) gets FastAPI's 422 ``extra_forbidden`` list.

Per request, set these before the call: ``next_errors`` ((status, body) answered instead, a ``str`` body as
text), ``first_byte_delay_s``, ``delay_between_chunks_s``, ``chunks`` (content deltas), ``content``,
``finish_reason``, ``keepalive_comments`` (comment lines before the first chunk), ``stream_error_after`` (content
chunks before the flavour's error event). Every streamed request is logged in ``streams``, with the monotonic time
the client hung up, noticed while the server waits between chunks or when a write fails.
"""

from __future__ import annotations

import json
import math
import re
import select
import socket
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

from tests.support.fake_http import FakeServer, Fault, Reply, Request
from tests.support.vendors.common import words

Flavour = Literal["openai", "vllm", "tgi", "llamacpp", "ollama", "litellm"]

DEFAULT_ALLOWED_FIELDS = frozenset(
    {"model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p", "stop", "seed", "stream"}
    | {"response_format"}
)
#: The fake's own words for a failure in the middle of a stream (the shape around them is the flavour's).
MID_STREAM_FAILURE = "the fake server failed mid-stream"
# llm/llama_server.go, when the prompt does not fit and context shift is off.
OLLAMA_TOO_LONG = (
    "the prompt is longer than the context length currently available to the model; shorten the prompt, adjust the "
    "context length in settings, or use a model with a longer context length"
)
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")


def prompt_tokens(text: str) -> int:
    """The fake's tokenizer: one token per CJK character, one per three other characters."""
    cjk = len(_CJK.findall(text))
    return cjk + math.ceil((len(text) - cjk) / 3)


@dataclass
class StreamLog:
    """One streamed request: when it arrived, how many frames went out, when the client hung up, if it did."""

    arrived: float
    frames_sent: int = 0
    hung_up_at: float | None = None
    completed: bool = False


@dataclass
class _Stream:
    """A streamed answer as written on the wire: SSE frames, sent with the request's pacing."""

    frames: list[str]
    log: StreamLog
    first_byte_delay_s: float
    between_frames_s: float

    def __iter__(self) -> Iterator[tuple[str | None, str]]:
        """Reply.events must be iterable; this fake writes ``frames`` itself (see ``_send_stream``)."""
        return iter(())


class FakeOpenAICompatible(FakeServer):
    def __init__(self, flavour: Flavour, *, context_tokens: int = 4096, strict: bool = False) -> None:
        super().__init__()
        self.flavour: Flavour = flavour
        self.context_tokens = context_tokens
        self.strict = strict
        self.allowed_fields: set[str] = set(DEFAULT_ALLOWED_FIELDS)
        self.legacy_errors = False
        self.next_errors: deque[tuple[int, Any]] = deque()
        self.first_byte_delay_s = 0.0
        self.delay_between_chunks_s = 0.0
        self.chunks: int | None = None
        self.content: str | None = None
        self.finish_reason = "stop"
        self.keepalive_comments = 0
        self.stream_error_after: int | None = None
        self.streams: list[StreamLog] = []
        #: Plain completions being answered now, and the most at once since the last reset.
        self.answering = 0
        self.answering_peak = 0
        self.route("POST", "/v1/chat/completions", self._completions)
        base = self._server.RequestHandlerClass
        assert isinstance(base, type)
        self._server.RequestHandlerClass = type("PacedHandler", (base,), {"_send_events": _send_stream})

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    # ---- the endpoint ------------------------------------------------------------------------------------

    def _completions(self, request: Request) -> Reply:
        if self.next_errors:
            status, body = self.next_errors.popleft()
            return _answer(status, body)
        body = request.json()
        unknown = sorted(set(body) - self.allowed_fields) if self.strict else []
        if unknown:
            return Reply(422, {"detail": [_extra_forbidden(name, body[name]) for name in unknown]})
        prompt = "\n".join(str(message.get("content", "")) for message in body.get("messages", []))
        tokens = prompt_tokens(prompt)
        streaming = bool(body.get("stream"))
        log = self._log(request) if streaming else None
        if tokens > self.context_tokens:
            overflow = self._overflow(tokens, body.get("max_tokens"), body.get("model", ""), streaming)
            if log is None or overflow.status != 200:
                return overflow
            return self._stream([_frame(overflow.body), "data: [DONE]\n\n"], log)
        text = self.content if self.content is not None else self._default_content(body)
        pieces = _split(text, self.chunks) if self.chunks else words(text)
        usage = {"prompt_tokens": tokens, "completion_tokens": len(pieces), "total_tokens": tokens + len(pieces)}
        if log is None:
            with self._answering():
                time.sleep(self.first_byte_delay_s)
            return Reply(200, self._completion(body.get("model", ""), text, usage))
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        return self._stream(self._frames(body.get("model", ""), pieces, usage if include_usage else None), log)

    @contextmanager
    def _answering(self) -> Iterator[None]:
        with self._lock:
            self.answering += 1
            self.answering_peak = max(self.answering_peak, self.answering)
        try:
            yield
        finally:
            with self._lock:
                self.answering -= 1

    def _default_content(self, body: dict[str, Any]) -> str:
        if self.chunks:
            return "".join(f"piece{index} " for index in range(self.chunks))
        return f"{self.flavour} says: {body['messages'][-1]['content']}"

    def _log(self, request: Request) -> StreamLog:
        log = StreamLog(request.arrived)
        with self._lock:
            self.streams.append(log)
        return log

    def _stream(self, frames: list[str], log: StreamLog) -> Reply:
        comment = ":\n\n" if self.flavour == "tgi" else ": ping\n\n"
        frames = [comment] * self.keepalive_comments + frames
        return Reply(events=_Stream(frames, log, self.first_byte_delay_s, self.delay_between_chunks_s))

    # ---- the flavour's words -------------------------------------------------------------------------------

    def _overflow(self, tokens: int, max_tokens: int | None, model: str, streaming: bool) -> Reply:
        """The answer to a prompt longer than the context (200 for a TGI stream, which carries the error)."""
        limit = self.context_tokens
        openai_words = (
            f"This model's maximum context length is {limit} tokens. However, your messages resulted in {tokens} "
            "tokens. Please reduce the length of the messages."
        )
        vllm_words = (
            f"This model's maximum context length is {limit} tokens. However, your request has {tokens} input "
            "tokens. Please reduce the length of the input messages."
        )
        match self.flavour:
            case "openai":
                return _openai_error(400, openai_words, "invalid_request_error", "context_length_exceeded", "messages")
            case "vllm" if self.legacy_errors:
                requested = f"{tokens} tokens in the messages, Please reduce the length of the messages."
                if max_tokens:
                    requested = (
                        f"{tokens + max_tokens} tokens ({tokens} in the messages, {max_tokens} in the completion). "
                        "Please reduce the length of the messages or completion."
                    )
                message = f"This model's maximum context length is {limit} tokens. However, you requested {requested}"
                return Reply(400, _vllm_legacy(message, "BadRequestError", 400))
            case "vllm":
                return Reply(400, {"error": _vllm_error(vllm_words, "BadRequestError", 400)})
            case "tgi":
                message = f"Input validation error: `inputs` must have less than {limit} tokens. Given: {tokens}"
                if streaming:
                    return Reply(200, {"error": {"message": message, "http_status_code": 422}})
                return Reply(422, {"error": message, "error_type": "validation"})
            case "llamacpp":
                message = (
                    f"request ({tokens} tokens) exceeds the available context size ({limit} tokens), try increasing it"
                )
                error = _llamacpp_error(400, message, "exceed_context_size_error")
                return Reply(400, {"error": {**error, "n_prompt_tokens": tokens, "n_ctx": limit}})
            case "ollama":
                return _openai_error(400, OLLAMA_TOO_LONG, "invalid_request_error", None, None)
            case "litellm":
                message = (
                    "litellm.BadRequestError: litellm.ContextWindowExceededError: OpenAIException - "
                    f"{vllm_words}\nReceived Model Group={model}\nAvailable Model Group Fallbacks=None"
                )
                return Reply(400, _litellm_error(message, 400))

    def _completion(self, model: str, text: str, usage: dict[str, int]) -> dict[str, Any]:
        return {
            "id": "" if self.flavour == "tgi" else "chatcmpl-fake",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "logprobs": None,
                    "finish_reason": self.finish_reason,
                }
            ],
            "usage": usage,
        }

    def _frames(self, model: str, pieces: list[str], usage: dict[str, int] | None) -> list[str]:
        """The data frames of a streamed answer, as the flavour writes them."""
        created = int(time.time())
        tgi = self.flavour == "tgi"

        def chunk(delta: dict[str, Any], finish: str | None, **extra: Any) -> str:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish, **extra}
            return _frame(self._chunk(model, created, [choice], usage_null=usage is not None or tgi))

        errors_after = self.stream_error_after
        shown = pieces if errors_after is None else pieces[:errors_after]
        frames: list[str] = []
        match self.flavour:
            case "openai" | "litellm":
                frames.append(chunk({"role": "assistant", "content": "", "refusal": None}, None))
                frames += [chunk({"content": piece}, None) for piece in shown]
            case "vllm":
                frames.append(chunk({"role": "assistant", "content": ""}, None))
                frames += [chunk({"content": piece}, None) for piece in shown]
            case "tgi":
                frames += [chunk({"role": "assistant", "content": piece}, None) for piece in shown]
            case "llamacpp":
                frames.append(chunk({"role": "assistant", "content": None}, None))
                frames += [chunk({"content": piece}, None) for piece in shown]
            case "ollama":
                frames += [
                    chunk({"role": "assistant", "content": piece} if index == 0 else {"content": piece}, None)
                    for index, piece in enumerate(shown)
                ]
        if errors_after is not None:
            return frames + self._error_event(chunk)
        match self.flavour:
            case "vllm":  # the finish reason rides on the last content chunk
                last = shown[-1] if shown else ""
                frames[-1] = chunk({"content": last}, self.finish_reason, stop_reason=None)
            case "tgi":  # the EOS token: a special token, so no text
                frames.append(chunk({"role": "assistant", "content": ""}, self.finish_reason))
            case _:
                frames.append(chunk({}, self.finish_reason))
        if usage is not None:
            frames.append(_frame(self._usage_chunk(model, created, usage)))
        return [*frames, "data: [DONE]\n\n"]

    def _error_event(self, chunk: Callable[..., str]) -> list[str]:
        """The frames a failure in the middle of a stream ends with."""
        match self.flavour:
            case "openai":
                error = {"message": MID_STREAM_FAILURE, "type": "server_error", "param": None, "code": None}
                return [_frame({"error": error})]
            case "vllm":
                # serving_chat: create_streaming_error_response(str(e)), BadRequestError/400 by default, then [DONE].
                error = (_vllm_legacy if self.legacy_errors else _vllm_error)(
                    MID_STREAM_FAILURE, "BadRequestError", 400
                )
                return [_frame({"error": error}), "data: [DONE]\n\n"]
            case "tgi":
                message = f"Request failed during generation: {MID_STREAM_FAILURE}"
                return [_frame({"error": {"message": message, "http_status_code": 422}}), "data: [DONE]\n\n"]
            case "llamacpp":
                return [_frame({"error": _llamacpp_error(500, MID_STREAM_FAILURE, "server_error")})]
            case "ollama":
                return [chunk({"content": ""}, None)]
            case "litellm":
                return [_frame(_litellm_error(f"litellm.APIError: {MID_STREAM_FAILURE}", 500))]

    def _chunk(self, model: str, created: int, choices: list[dict[str, Any]], *, usage_null: bool) -> dict[str, Any]:
        chunk: dict[str, Any] = {
            "id": "" if self.flavour == "tgi" else "chatcmpl-fake",
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "system_fingerprint": {"tgi": "3.3.6-native", "ollama": "fp_ollama"}.get(self.flavour, "fp_fake"),
            "choices": choices,
        }
        if usage_null and self.flavour in {"openai", "litellm", "tgi"}:
            chunk["usage"] = None
        return chunk

    def _usage_chunk(self, model: str, created: int, usage: dict[str, int]) -> dict[str, Any]:
        chunk = {**self._chunk(model, created, [], usage_null=False), "usage": usage}
        if self.flavour == "llamacpp":
            chunk["timings"] = {"prompt_n": usage["prompt_tokens"], "predicted_n": usage["completion_tokens"]}
        return chunk


# ---- bodies --------------------------------------------------------------------------------------------------


def _answer(status: int, body: Any) -> Reply:
    if isinstance(body, str):
        return Reply(status, body.encode(), {"Content-Type": "text/plain; charset=utf-8"})
    return Reply(status, body)


def _extra_forbidden(name: str, value: Any) -> dict[str, Any]:
    """One item of FastAPI's 422 ``detail`` list for a field a pydantic ``extra="forbid"`` model does not know."""
    return {"type": "extra_forbidden", "loc": ["body", name], "msg": "Extra inputs are not permitted", "input": value}


def _openai_error(status: int, message: str, kind: str, code: str | None, param: str | None) -> Reply:
    return Reply(status, {"error": {"message": message, "type": kind, "param": param, "code": code}})


def _vllm_error(message: str, kind: str, code: int) -> dict[str, Any]:
    return {"message": message, "type": kind, "param": None, "code": code}


def _vllm_legacy(message: str, kind: str, code: int) -> dict[str, Any]:
    return {"object": "error", **_vllm_error(message, kind, code)}


def _llamacpp_error(code: int, message: str, kind: str) -> dict[str, Any]:
    return {"code": code, "message": message, "type": kind}


def _litellm_error(message: str, status: int) -> dict[str, Any]:
    return {"error": {"message": message, "type": None, "param": None, "code": str(status)}}


def _frame(data: Any) -> str:
    return f"data: {json.dumps(data)}\n\n"


def _split(text: str, parts: int) -> list[str]:
    """``text`` in ``parts`` consecutive slices (some empty when the text is shorter: servers send those too)."""
    return [text[index * len(text) // parts : (index + 1) * len(text) // parts] for index in range(parts)]


# ---- the wire ------------------------------------------------------------------------------------------------


def _send_stream(handler: Any, reply: Reply, fault: Fault) -> None:
    """Replaces the plain FakeServer's event writer: waits out the first-byte delay and the pauses between frames
    watching the client's socket, and logs the moment the client hangs up. Each frame is a chunk of a chunked
    body on a kept-alive connection, as vLLM (uvicorn) and OpenAI stream. An injected
    ``Fault(stop_stream_after=...)`` sends that many frames, then drops the connection mid-body;
    ``Fault(end_stream_after=...)`` ends the body cleanly after that many."""
    stream = reply.events
    assert isinstance(stream, _Stream)
    log = stream.log
    try:
        if not _client_stays(handler.connection, stream.first_byte_delay_s):
            log.hung_up_at = time.monotonic()
            handler.close_connection = True
            return
        handler._begin_events(reply)
        for index, frame in enumerate(stream.frames):
            cut = fault.stream_cut(index)
            if cut == "drop":
                handler.close_connection = True
                return
            if cut == "end":
                break
            if index and not _client_stays(handler.connection, stream.between_frames_s):
                log.hung_up_at = time.monotonic()
                handler.close_connection = True
                return
            handler._chunk(frame.encode())
            log.frames_sent += 1
        handler._chunk(b"")
        log.completed = log.frames_sent == len(stream.frames)
    except (BrokenPipeError, ConnectionResetError):
        log.hung_up_at = time.monotonic()
        handler.close_connection = True


def _client_stays(connection: socket.socket, seconds: float) -> bool:
    """Wait ``seconds``; False as soon as the client closes its end (its socket reads as end-of-file)."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        readable, _, _ = select.select([connection], [], [], left)
        if not readable:
            return True
        try:
            if not connection.recv(1, socket.MSG_PEEK):
                return False
        except ConnectionResetError:
            return False
        time.sleep(left)  # the client sent bytes of its own: nothing to watch until the wait is over
    return True
