"""OpenAI-compatible chat: ``POST /v1/chat/completions`` (plain and streamed) and ``GET /v1/models``.

A completion is a ``stepper.chat`` task at ``interactive`` priority. Tools, ``tool_choice``, assistant
``tool_calls`` and ``tool`` messages, ``response_format``, ``stop``, ``seed``, ``top_p``, the penalties,
``logprobs``/``top_logprobs`` and ``user`` are passed to the task as they are (see :mod:`stepper.schemas.chat`);
``n`` above 1 is refused (400 ``n_not_supported``: one answer per task, so fallback, cache and stream stay per
answer; send n requests instead). Streaming relays the task's Redis stream as server-sent
``chat.completion.chunk`` events ending with ``data: [DONE]``; tool calls stream as OpenAI's
``delta.tool_calls[]`` fragments (``index``; ``id``, ``type`` and ``function.name`` on a call's first fragment;
``function.arguments`` text). When the worker's stream says
``reset`` (a provider failed mid-answer and the next one restarts), OpenAI's protocol has no way to take back
text already sent: if any text went out, the stream ends with an error event (the SDK raises ``APIError``) and
no ``[DONE]``; if none did, the reset is invisible and the next provider's answer streams as usual.

Every stream ends: with ``[DONE]`` after the finish chunk, or with an error event. A task that finished without
writing its stream (answered by the worker's cache, revoked before it ran) ends it with its outcome; a cancelled
task ends it with an error event of code ``cancelled`` (a plain request gets 499 ``cancelled``). A client that
hangs up before its answer ended cancels its task (see :mod:`stepper.gateway.cancellation`).
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import nullcontext
from functools import partial
from typing import Annotated, Any, Literal, cast

from celery.exceptions import TaskRevokedError
from celery.exceptions import TimeoutError as CeleryTimeout
from celery.result import AsyncResult, EagerResult
from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from stepper.errors import Cancelled, ChainExhausted, ContentRejected, InvalidRequest, StepperError
from stepper.families import FAMILIES
from stepper.gateway.auth import Caller
from stepper.gateway.cancellation import (
    CANCELLED_STATUS,
    ClientGone,
    EventStream,
    Relay,
    hang_up,
    revoked,
    wait_watching,
)
from stepper.gateway.errors import ApiError
from stepper.gateway.state import Gateway, admitting, caller, gateway, limited, submitted_by
from stepper.infra.result_backend import unsubscribed
from stepper.infra.streams import StreamEvent, answer_ending, answer_events
from stepper.producer import submit
from stepper.schemas import ChatRequest

router = APIRouter(tags=["openai"])


class TextPart(BaseModel):
    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    """OpenAI's message; ``developer`` is its newer name for ``system``. An assistant's ``tool_calls`` and a
    tool's ``tool_call_id`` are checked by stepper.chat's own schema (422 names the field)."""

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None
    name: str | None = None
    tool_calls: list[Any] | None = None
    tool_call_id: str | None = None

    def text(self) -> str:
        if self.content is None:
            return ""
        return self.content if isinstance(self.content, str) else "".join(part.text for part in self.content)

    def to_stepper(self) -> dict[str, Any]:
        role = "system" if self.role == "developer" else self.role
        # Only an assistant's tool calls may come without content; stepper.chat's schema says so by field.
        message: dict[str, Any] = {"role": role, "content": None if self.content is None else self.text()}
        if self.tool_calls is not None:
            message["tool_calls"] = self.tool_calls
        if self.tool_call_id is not None:
            message["tool_call_id"] = self.tool_call_id
        return message


class StreamOptions(BaseModel):
    include_usage: bool = False


#: OpenAI request fields passed to stepper.chat as they are, when set; its schema validates them.
PASSED_FIELDS = ("temperature", "top_p", "stop", "seed", "presence_penalty", "frequency_penalty", "logprobs",
                 "top_logprobs", "tools", "tool_choice", "response_format", "user")  # fmt: skip


class ChatCompletionRequest(BaseModel):
    """The fields stepper honours; others OpenAI defines (``parallel_tool_calls``, ``metadata``...) are
    ignored, so existing clients work unchanged."""

    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1, max_length=200)
    messages: list[ChatMessage] = Field(min_length=1, max_length=1000)
    temperature: float | None = None
    top_p: float | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    tools: list[Any] | None = None
    tool_choice: Any = None
    response_format: Any = None
    user: str | None = None
    max_tokens: int | None = Field(default=None, ge=1, le=1_000_000)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=1_000_000)
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int | None = Field(default=None, ge=1, le=128)
    functions: Any = None
    function_call: Any = None


def to_chat_request(body: ChatCompletionRequest) -> dict[str, Any]:
    """stepper.chat's keyword arguments for an OpenAI request."""
    if body.n is not None and body.n > 1:
        raise ApiError(
            400,
            f"n={body.n}: stepper generates one choice per request (each request is its own task, with its own "
            "fallback, cache entry and stream); send n requests, with different seeds if you want them to differ",
            "n_not_supported",
        )
    if body.functions is not None or body.function_call is not None:
        raise ApiError(
            400,
            "functions and function_call are OpenAI's deprecated form of tools: send tools and tool_choice instead",
            "unsupported_parameter",
        )
    request: dict[str, Any] = {"messages": [message.to_stepper() for message in body.messages], "model": body.model}
    for name in PASSED_FIELDS:
        if (value := getattr(body, name)) is not None:
            request[name] = value
    if (max_tokens := body.max_completion_tokens or body.max_tokens) is not None:
        request["max_tokens"] = max_tokens
    if body.stream:
        request["stream"] = True
    return request


def served_models(state: Gateway) -> list[tuple[str, str]]:
    """``(model, provider)`` per chat chain entry, in chain order, each model once."""
    seen: dict[str, str] = {}
    for entry in state.settings.chains["chat"]:
        seen.setdefault(entry.model, entry.provider)
    return list(seen.items())


def _accepted_models(state: Gateway) -> set[str]:
    """What the chain would serve: each entry's model, and the other models its providers declare."""
    settings = state.settings
    chain = settings.chains["chat"]
    return {entry.model for entry in chain} | {m for e in chain for m in settings.providers[e.provider].models}


@router.get("/v1/models", summary="the models the chat chain serves (OpenAI's list shape)")
async def list_models(
    state: Annotated[Gateway, Depends(gateway)], who: Annotated[Caller, Depends(limited)]
) -> dict[str, Any]:
    data = [
        {"id": model, "object": "model", "created": 0, "owned_by": provider} for model, provider in served_models(state)
    ]
    return {"object": "list", "data": data}


@router.post(
    "/v1/chat/completions", summary="an OpenAI-compatible chat completion, plain or streamed", response_model=None
)
async def chat_completions(
    request: Request,
    body: ChatCompletionRequest,
    state: Annotated[Gateway, Depends(gateway)],
    who: Annotated[Caller, Depends(caller)],
) -> dict[str, Any] | EventStream:
    if body.model not in _accepted_models(state):
        raise ApiError(404, f"the model {body.model!r} does not exist or is not served here", "model_not_found")
    arguments = to_chat_request(body)
    parsed = cast(ChatRequest, FAMILIES["chat"].parse(arguments))  # InvalidRequest (422) names the field
    tokens = FAMILIES["chat"].estimate_tokens(parsed)
    result = await run_in_threadpool(_admit_and_submit, state, who, tokens, arguments, parsed)
    completion_id = f"chatcmpl-{result.id}"
    created = int(time.time())
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        relay = Relay()
        chunks = _stream(
            state,
            result,
            relay,
            completion_id=completion_id,
            created=created,
            model=body.model,
            include_usage=include_usage,
        )
        return EventStream(chunks, relay, partial(hang_up, state, request, result))
    timeout_s = state.settings.gateway.chat_timeout_s
    value = await wait_watching(request, state, result, partial(_result, state, result), timeout_s)
    if value is None:
        raise _timed_out()
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": value["model"],
        "choices": [
            {
                "index": 0,
                "message": _message(value["output"]["message"]),
                "finish_reason": value["output"]["finish_reason"],
                "logprobs": value["output"].get("logprobs"),
            }
        ],
        "usage": _usage(value.get("usage")),
    }


def _admit_and_submit(
    state: Gateway, who: Caller, tokens: int, arguments: dict[str, Any], parsed: ChatRequest
) -> AsyncResult | EagerResult:
    """Admit the caller and submit its chat (validated already) in one thread hop, the rate-limit charge riding
    with the publish: a streamed chat's first token waits on both. A streamed chat's result is not subscribed to:
    its stream's ``done`` event brings what ends the answer."""
    with admitting(state, who, tokens), unsubscribed() if parsed.stream else nullcontext():
        return submit("chat", arguments, priority="interactive", parsed=parsed, headers=submitted_by(who))


def _message(message: dict[str, Any]) -> dict[str, Any]:
    """stepper's answer as OpenAI's ``choices[].message``: content null when the assistant only calls tools."""
    answer: dict[str, Any] = {"role": "assistant", "content": message.get("content"), "refusal": None}
    if message.get("tool_calls"):
        answer["tool_calls"] = [{k: v for k, v in call.items() if v is not None} for call in message["tool_calls"]]
    return answer


def _result(state: Gateway, result: AsyncResult | EagerResult, timeout_s: float) -> dict[str, Any] | None:
    """The task's result within ``timeout_s`` (None if it has not come), or the error answer its failure
    deserves (redacted, typed for the SDK); a revoked task is 499 ``cancelled`` even before a worker saw it."""
    try:
        value: dict[str, Any] = result.get(timeout=timeout_s)
    except CeleryTimeout:
        if revoked(state, result.id):
            raise _cancelled("the task was cancelled") from None
        return None
    except InvalidRequest:
        raise
    except (Cancelled, TaskRevokedError) as exc:
        raise _cancelled(state.redactor.redact(f"the task was cancelled: {exc}")) from None
    except ContentRejected as exc:
        raise ApiError(400, state.redactor.redact(str(exc)), "content_filter") from None
    except ChainExhausted as exc:
        if _unservable(exc):
            raise ApiError(400, state.redactor.redact(str(exc)), "unsupported_request") from None
        raise ApiError(503, state.redactor.redact(str(exc)), "providers_unavailable") from None
    except StepperError as exc:
        raise ApiError(502, state.redactor.redact(f"{type(exc).__name__}: {exc}"), "upstream_error") from None
    return value


def _unservable(exc: ChainExhausted) -> bool:
    """Whether the chain failed only because no provider can serve what the request asks (tools of a provider
    without them, logprobs of one that gives none...): a 400 the SDK does not retry, not a 503 it would."""
    tried = [attempt for attempt in exc.attempts if attempt.get("outcome") != "skipped"]
    return (
        not exc.retryable
        and bool(tried)
        and all(str(attempt.get("error") or "").startswith("UnsupportedInput:") for attempt in tried)
    )


def _wait(state: Gateway, result: AsyncResult | EagerResult) -> dict[str, Any]:
    """The task's result within the chat timeout, or the error answer (504 ``timeout`` when none came)."""
    value = _result(state, result, state.settings.gateway.chat_timeout_s)
    if value is None:
        raise _timed_out()
    return value


def _timed_out() -> ApiError:
    return ApiError(504, "no answer within the gateway's chat timeout; try again", "timeout")


def _cancelled(message: str) -> ApiError:
    return ApiError(CANCELLED_STATUS, message, "cancelled")


def _usage(usage: Mapping[str, Any] | None) -> dict[str, Any]:
    """OpenAI's usage object from a result's ``usage``; ``prompt_tokens_details.cached_tokens`` is the part of the
    prompt the vendor served from its prompt cache (0 when it did not say)."""
    usage = usage or {}
    prompt, completion = int(usage.get("input_tokens", 0)), int(usage.get("output_tokens", 0))
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": int(usage.get("cached_input_tokens", 0))},
    }


async def _stream(
    state: Gateway,
    result: AsyncResult | EagerResult,
    relay: Relay,
    *,
    completion_id: str,
    created: int,
    model: str,
    include_usage: bool,
) -> AsyncIterator[str]:
    """Server-sent events, the task's stream followed by the gateway's hub. Sets ``relay.over`` once the task's
    outcome is known; stops where it waits when Starlette cancels the relay (the client hung up)."""

    def chunk(
        delta: dict[str, Any],
        finish_reason: str | None = None,
        usage: dict[str, Any] | None = None,
        logprobs: dict[str, Any] | None = None,
    ) -> str:
        choices = [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": logprobs}]
        event: dict[str, Any] = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [] if usage is not None else choices,
        }
        if usage is not None:
            event["usage"] = usage
        return f"data: {json.dumps(event)}\n\n"

    def error(message: str, code: str) -> str:
        relay.over = True
        body = {
            "error": {"message": state.redactor.redact(message), "type": "server_error", "param": None, "code": code}
        }
        return f"data: {json.dumps(body)}\n\n"

    async def ended() -> list[StreamEvent]:
        # A task revoked while queued behind busy workers, or on a queue no worker consumes, ends here: its client
        # would otherwise wait for the chat timeout.
        relay.check_client()
        return await state.endings.ended(result.id)

    yield chunk({"role": "assistant", "content": ""})
    end: dict[str, Any] | None = None  # finish reason, logprobs and usage (answer_ending)
    if not isinstance(result, EagerResult):  # a cached answer has no stream: it is sent whole below
        sent_text = False
        try:
            async for event in state.streams.events(result.id, state.settings.gateway.chat_timeout_s, ended):
                if (delta := _delta(event)) is not None:
                    sent_text = True
                    yield chunk(delta)
                elif (ending := _ending(event, sent_text)) is not None:
                    yield error(*ending)
                    return
                elif event.type == "done":
                    relay.over = True  # its result is being stored: nothing left to cancel
                    end = json.loads(event.text) if event.text else None
                    break
        except ClientGone:
            return
        except TimeoutError:
            yield error("no answer within the gateway's chat timeout", "timeout")
            return
    if end is None:  # a cached answer, or the done event of a worker from before it carried the ending
        try:
            value = await run_in_threadpool(_wait, state, result)
        except (ApiError, InvalidRequest) as exc:
            yield error(*_failure(exc))
            return
        relay.over = True
        if isinstance(result, EagerResult):
            for event in answer_events(value["output"]["message"]):
                yield chunk(_delta(event) or {})
        end = answer_ending(value)
    yield chunk({}, finish_reason=end["finish_reason"], logprobs=end["logprobs"])
    if include_usage:
        yield chunk({}, usage=_usage(end["usage"]))
    yield "data: [DONE]\n\n"


def _failure(exc: ApiError | InvalidRequest) -> tuple[str, str]:
    """The message and code of a stream's error event for a task that failed."""
    if isinstance(exc, ApiError):
        return str(exc.detail), exc.code
    return str(exc), "invalid_request"


def _delta(event: StreamEvent) -> dict[str, Any] | None:
    """The chunk ``delta`` of a text or tool-call event (None for others). A tool call's fragment becomes one of
    OpenAI's ``delta.tool_calls[]``: ``id``, ``type`` and the function's ``name`` only on a call's first
    fragment, as OpenAI sends them (clients concatenate the rest)."""
    if event.type == "delta":
        return {"content": event.text} if event.text else None
    if event.type != "tool_call":
        return None
    fragment = json.loads(event.text)
    delta: dict[str, Any] = {"index": fragment["index"]}
    if fragment.get("id"):
        delta["id"], delta["type"] = fragment["id"], "function"
    function = {"name": fragment["name"]} if fragment.get("name") else {}
    delta["function"] = {**function, "arguments": fragment.get("arguments") or ""}
    if fragment.get("extra_content"):
        delta["extra_content"] = fragment["extra_content"]
    return {"tool_calls": [delta]}


def _ending(event: StreamEvent, sent_text: bool) -> tuple[str, str] | None:
    """The error (message, code) that ``event`` ends the SSE with, if it does. A reset before any text went out
    is invisible: the next provider's answer streams as usual."""
    if event.type == "reset" and sent_text:
        return f"the answer was interrupted and restarted on another provider: {event.text}", "reset"
    if event.type == "error":
        return event.text, "upstream_error"
    if event.type == "cancelled":
        return f"the task was cancelled: {event.text}", "cancelled"
    return None
