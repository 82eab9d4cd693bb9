"""What an LLM server's error answer means, read from its body rather than its status code.

Servers that speak the same wire format disagree on how they say "no": vLLM answers a prompt that is too long
with a 400 ``BadRequestError``, TGI with a 422 ``validation`` error (or an error event inside a 200 stream),
llama.cpp with ``exceed_context_size_error``, Gemini with ``INVALID_ARGUMENT``, Cohere with a bare
``{"message": "too many tokens: ..."}``. :func:`read_vendor_error` reads any of the bodies below and says what
the answer means, so the caller can decide: another provider with a larger context, the same one without an
optional parameter, a cooldown, or a stop.

Bodies it reads (each taken from the server's own source or documentation; see the tests for the citations):

* ``{"error": {"message", "type", "param", "code"}}``: OpenAI, Azure, vLLM >= 0.6, llama.cpp (plus
  ``n_prompt_tokens`` and ``n_ctx``), Ollama's ``/v1``, LiteLLM's proxy (``code`` the status as a string), TGI's
  in-stream event (``http_status_code``), Anthropic;
* ``{"error": {"code": 400, "message", "status", "details": [...]}}`` (Gemini; a list of those from
  ``streamGenerateContent``);
* ``{"object": "error", "message", "type", "param", "code": 400}`` (vLLM < 0.6, Mistral);
* ``{"error": "...", "error_type": "validation"}`` (TGI), ``{"error": "..."}`` (Ollama's own API);
* ``{"message": "..."}`` (Cohere), ``{"detail": [{"type", "loc", "msg"}]}`` (FastAPI/pydantic) and the same one
  level deeper, ``{"message": {"detail": [...]}}``, as some proxies pass it on;
* plain text (axum's 422 ``Failed to deserialize the JSON body ...``, a proxy's HTML error page).

The meaning is decided by what the body says first (vendor codes, then wording), by the status only when the
body says nothing specific. This module does no I/O: :mod:`stepper.providers.http` maps the result onto
:mod:`stepper.errors`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

__all__ = ["MESSAGE_CHARS", "Meaning", "VendorError", "read_vendor_error"]

Meaning = Literal[
    "context_overflow",
    "unsupported_parameter",
    "content_policy",
    "rate_limited",
    "quota_exhausted",
    "overloaded",
    "auth",
    "not_found",
    "bad_request",
    "server_error",
]

#: The longest message kept: enough for a vendor's sentence and its numbers, short enough for a log line.
MESSAGE_CHARS = 300


@dataclass(frozen=True)
class VendorError:
    """One error answer, classified. ``status`` is 200 for an error event that arrived inside a 200 stream."""

    status: int
    meaning: Meaning
    #: The vendor's own words on one line (a pydantic detail list as ``loc.joined: msg; ...``), at most
    #: :data:`MESSAGE_CHARS` characters; raw JSON only when the body holds nothing readable.
    message: str
    #: The vendor's code or error type, e.g. ``context_length_exceeded`` or ``exceed_context_size_error``.
    code: str | None = None
    #: For ``unsupported_parameter``: the top-level request field the server refused, e.g. ``stream_options``.
    param: str | None = None
    #: For ``context_overflow``: the model's context size, when the vendor states it.
    limit_tokens: int | None = None
    #: For ``context_overflow``: the tokens the request needed, when the vendor states them.
    requested_tokens: int | None = None


def read_vendor_error(status: int, body: object) -> VendorError:
    """Classify an error answer. ``body`` is the decoded JSON body (dict or list) or the raw text when it was
    not JSON; ``status`` is the HTTP status, 200 for an error event inside a stream (the status the event states,
    if any, then stands in for it)."""
    said = _read(body)
    effective = said.stated_status if status == 200 and said.stated_status else status
    meaning = _meaning(effective, said)
    param = _unsupported_param(said) if meaning == "unsupported_parameter" else None
    limit, requested = _token_counts(said) if meaning == "context_overflow" else (None, None)
    code = said.codes[0] if said.codes else None
    return VendorError(status, meaning, _one_line(said.message), code, param, limit, requested)


@dataclass(frozen=True)
class _Said:
    """What a body says, whatever its shape."""

    message: str
    #: Vendor codes and types, the most specific first (numeric codes are statuses, not codes).
    codes: tuple[str, ...] = ()
    #: The request field the vendor names (OpenAI's ``param``, a pydantic ``loc`` below ``body``).
    param: str | None = None
    #: The status the body itself states (``code: 400``, ``http_status_code``), for errors inside a 200 stream.
    stated_status: int | None = None
    #: llama.cpp's ``n_ctx`` and ``n_prompt_tokens``.
    limit_tokens: int | None = None
    prompt_tokens: int | None = None
    #: Gemini's quota ids (``...PerMinute...``, ``...PerDay...``) from ``QuotaFailure`` and ``ErrorInfo`` details.
    quota_ids: tuple[str, ...] = ()


def _read(body: object) -> _Said:
    if isinstance(body, list):  # Gemini's streamGenerateContent answers a JSON array of error objects
        body = body[0] if body else ""
    if isinstance(body, str):
        return _Said(_text(body))
    if not isinstance(body, Mapping):
        return _Said(json.dumps(body))
    error = body.get("error")
    if isinstance(error, Mapping):
        return _read_object(error, outer=body)
    if isinstance(body.get("message"), Mapping):  # a proxy that wrapped a FastAPI body: {"message": {"detail": ...}}
        return _read_object(body["message"], outer=body)
    return _read_object(body, outer=body)


def _read_object(error: Mapping[str, object], outer: Mapping[str, object]) -> _Said:
    """One error object: ``error`` is where the vendor put its fields, ``outer`` the whole body around it."""
    details = error.get("detail")
    pydantic = [item for item in details if isinstance(item, Mapping)] if isinstance(details, list) else []
    message = _message(error, pydantic)
    google = [item for item in _list(error.get("details")) if isinstance(item, Mapping)]
    codes = [
        *(str(item["reason"]) for item in google if isinstance(item.get("reason"), str)),
        *(str(item["type"]) for item in pydantic if isinstance(item.get("type"), str)),
        *(value for key in ("code", "type", "status") if (value := _word(error.get(key))) is not None),
        *(value for value in [_word(outer.get("error_type"))] if value is not None),
        *_litellm_exception(message),
    ]
    param = _word(error.get("param")) or next(
        (_loc_field(item["loc"]) for item in pydantic if item.get("type") == "extra_forbidden"), None
    )
    return _Said(
        message=message or json.dumps(outer, separators=(",", ":")),
        codes=tuple(codes),
        param=param,
        stated_status=_status(error.get("code")) or _status(error.get("http_status_code")),
        limit_tokens=_integer(error.get("n_ctx")),
        prompt_tokens=_integer(error.get("n_prompt_tokens")),
        quota_ids=tuple(_quota_ids(google)),
    )


def _message(error: Mapping[str, object], pydantic: list[Mapping[str, object]]) -> str:
    """The readable explanation: a message string, a FastAPI ``detail`` string or list, TGI's ``error`` string."""
    if pydantic:
        return "; ".join(
            f"{'.'.join(str(part) for part in _list(item.get('loc')))}: {item.get('msg')}" for item in pydantic
        )
    for key in ("message", "detail", "error"):
        if isinstance(value := error.get(key), str) and value.strip():
            return value
    return ""


def _loc_field(loc: object) -> str | None:
    """The top-level request field of a pydantic ``loc`` such as ``["body", "stream_options", "include_usage"]``."""
    parts = [part for part in _list(loc) if isinstance(part, str)]
    if parts and parts[0] == "body":
        parts = parts[1:]
    return parts[0] if parts else None


def _quota_ids(google: Iterable[Mapping[str, object]]) -> Iterable[str]:
    for item in google:
        for violation in _list(item.get("violations")):
            if isinstance(violation, Mapping) and isinstance(violation.get("quotaId"), str):
                yield str(violation["quotaId"])
        metadata = item.get("metadata")
        if isinstance(metadata, Mapping) and isinstance(metadata.get("quota_limit"), str):
            yield str(metadata["quota_limit"])


# LiteLLM's proxy names its exception at the front of the message, most specific last:
# "litellm.BadRequestError: litellm.ContextWindowExceededError: AnthropicError - ...".
_LITELLM_CHAIN = re.compile(r"(?:litellm\.(\w+):\s*)+")


def _litellm_exception(message: str) -> list[str]:
    match = _LITELLM_CHAIN.match(message)
    return [match.group(1)] if match else []


# ---- what the words mean -------------------------------------------------------------------------------------

_OVERFLOW_CODES = {"context_length_exceeded", "exceed_context_size_error", "contextwindowexceedederror"}
_OVERFLOW_WORDS = re.compile(
    "|".join(
        [
            r"maximum context length is \d+",  # OpenAI, vLLM, DeepSeek, OpenRouter
            r"exceeds? the configured limit of \d+ tokens",  # OpenAI (gpt-5 family)
            r"exceeds the context window",  # OpenAI
            r"exceeds the available context size",  # llama.cpp
            r"is larger than the max context size",  # llama.cpp, context shift off
            r"input token count.{0,20} exceeds the maximum number of tokens",  # Gemini
            r"too many tokens(?!: max tokens must)",  # Cohere (not its cap on the output)
            r"too large for model with \d+ maximum context length",  # Mistral
            r"`inputs` tokens \+ `max_new_tokens` must be <=",  # TGI
            r"`inputs` must have less than \d+ tokens",  # TGI
            r"prompt is longer than the context length",  # Ollama
            r"input length exceeds the context length",  # Ollama
            r"prompt is too long: \d+ tokens > \d+ maximum",  # Anthropic (as LiteLLM passes it on)
            r"exceed context limit: \d+ \+ \d+ > \d+",  # Anthropic, prompt and max_tokens (as LiteLLM passes it on)
            r"is longer than the model's context length",  # SGLang (as LiteLLM passes it on)
        ]
    ),
    re.IGNORECASE,
)

_UNSUPPORTED_CODES = {"unsupported_parameter", "unsupported_value", "unknown_parameter", "extra_forbidden"}
_UNSUPPORTED_WORDS = [
    re.compile(r"Unsupported (?:parameter|value): '([^']+)'"),  # OpenAI
    re.compile(r"Unknown parameter: '([^']+)'"),  # OpenAI
    re.compile(r"Unrecognized request arguments? supplied: ([\w.\[\]]+)"),  # Azure OpenAI
    re.compile(r"unknown field `([^`]+)`"),  # serde (axum's JSON rejection)
    re.compile(r"Unknown name \"[^\"]+\" at '([^']+)': Cannot find field"),  # Google: a nested field
    re.compile(r"Unknown name \"([^\"]+)\": Cannot find field"),  # Google: a top-level field
    re.compile(r"Unsupported param: ([\w.]+)"),  # llama.cpp
    # "Input validation error: grammar is not supported" (TGI), "invalid request: response_format is not supported
    # with RAG." (Cohere): the field opens the message or its clause, so "..., or is not supported" names none.
    re.compile(r"(?:^|: )[`'\"]?([a-z_][\w.]*)[`'\"]?(?: [!=]= \S+)? (?:is|are) not supported"),
]
# llama.cpp's 501: a capability this server was not started with (its message names no request field).
_NOT_SUPPORTED_CODES = {"not_supported_error"}

_POLICY_CODES = {"content_policy_violation", "content_filter", "contentpolicyviolationerror"}
_POLICY_WORDS = re.compile(
    r"safety system|content management policy|violating our usage polic|content policy", re.IGNORECASE
)

_AUTH_CODES = {"invalid_api_key", "api_key_invalid", "authentication_error", "permission_error"}
_QUOTA_CODES = {"insufficient_quota"}
_RATE_CODES = {"rate_limit_exceeded", "rate_limit_error", "resource_exhausted", "ratelimiterror"}
_OVERLOAD_CODES = {"overloaded", "overloaded_error"}
_OVERLOAD_WORDS = re.compile(r"\boverloaded\b|high demand", re.IGNORECASE)
_NOT_FOUND_CODES = {"model_not_found", "not_found", "not_found_error", "notfounderror"}


def _meaning(status: int, said: _Said) -> Meaning:
    """The first rule that holds, in this order. What the body says beats the status: a 400 that says the prompt
    is too long is an overflow, a 400 whose Gemini reason is API_KEY_INVALID is auth."""
    codes = {code.lower() for code in said.codes}
    text = said.message
    rules: list[tuple[Meaning, object]] = [
        ("context_overflow", codes & _OVERFLOW_CODES or _OVERFLOW_WORDS.search(text) or status == 413),
        ("content_policy", codes & _POLICY_CODES or _POLICY_WORDS.search(text)),
        ("unsupported_parameter", codes & (_UNSUPPORTED_CODES | _NOT_SUPPORTED_CODES) or _unsupported_field(text)),
        ("auth", codes & _AUTH_CODES or status in {401, 403}),
        (
            "quota_exhausted",
            codes & _QUOTA_CODES or any("PerDay" in quota for quota in said.quota_ids) or status == 402,
        ),
        (
            "overloaded",
            codes & _OVERLOAD_CODES or status in {503, 529} or (status >= 500 and _OVERLOAD_WORDS.search(text)),
        ),
        ("rate_limited", codes & _RATE_CODES or status == 429),
        ("not_found", codes & _NOT_FOUND_CODES or status == 404),
        # 200: an error event inside a stream that states no status of its own.
        ("server_error", status >= 500 or status in {200, 408, 409}),
    ]
    return next((meaning for meaning, holds in rules if holds), "bad_request")


def _unsupported_param(said: _Said) -> str | None:
    """The top-level field an unsupported-parameter answer names: the vendor's own ``param`` when its code says
    the parameter is unsupported, else the field its words name."""
    codes = {code.lower() for code in said.codes}
    field = said.param if codes & _UNSUPPORTED_CODES and said.param else _unsupported_field(said.message)
    return _top_level(field) if field else None


def _unsupported_field(text: str) -> str | None:
    for pattern in _UNSUPPORTED_WORDS:
        if match := pattern.search(text):
            return match.group(1)
    return None


def _top_level(field: str) -> str:
    """``generation_config.response_schema`` -> ``generation_config``; ``messages[0].content`` -> ``messages``."""
    return re.split(r"[.\[]", field, maxsplit=1)[0]


# ---- numbers -------------------------------------------------------------------------------------------------

# Each pattern names what it finds: the model's context (limit), what the request needed (requested), or the
# prompt (input) and the output it asked for (output), whose sum is what it needed.
_COUNTS = [
    re.compile(p, re.IGNORECASE | re.DOTALL)
    for p in [
        # vLLM >= 0.10: "'max_tokens' or 'max_completion_tokens' is too large: 8000. This model's maximum
        # context length is 4096 tokens and your request has 2778 input tokens (8000 > 4096 - 2778)."
        r"is too large: (?P<output>\d+)\. This model's maximum context length is (?P<limit>\d+) tokens and your"
        r" request has (?P<input>\d+) input tokens",
        # vLLM renderers: "... you requested 16 output tokens and your prompt contains at least 472970 input tokens"
        r"maximum context length is (?P<limit>\d+) tokens.*?, for a total of (?:at least )?(?P<requested>\d+) tokens",
        r"maximum context length is (?P<limit>\d+) tokens.*?you requested (?P<output>\d+) output tokens and your"
        r" prompt contains (?:at least )?(?P<input>\d+) input tokens",
        # OpenAI, vLLM < 0.10, DeepSeek, OpenRouter
        r"maximum context length is (?P<limit>\d+) tokens.*?(?:you requested (?:about )?|resulted in |your"
        r" request has )(?P<requested>\d+)(?: input)? tokens",
        r"configured limit of (?P<limit>\d+) tokens.*?resulted in (?P<requested>\d+) tokens",  # OpenAI
        r"must be <= (?P<limit>\d+)\. Given: (?P<input>\d+) `inputs` tokens and (?P<output>\d+) `max_new_tokens`",
        r"`inputs` must have less than (?P<limit>\d+) tokens\. Given: (?P<requested>\d+)",  # TGI
        r"request \((?P<requested>\d+) tokens\) exceeds the available context size \((?P<limit>\d+) tokens\)",
        r"input \((?P<requested>\d+) tokens\) is larger than the max context size \((?P<limit>\d+) tokens\)",
        r"input token count \((?P<requested>\d+)\) exceeds the maximum number of tokens allowed \((?P<limit>\d+)\)",
        r"input token count exceeds the maximum number of tokens allowed \((?P<limit>\d+)\)",  # Gemini 2.5
        r"cannot exceed (?P<limit>\d+) - received (?P<requested>\d+)",  # Cohere
        r"contains (?P<requested>\d+) tokens.*?too large for model with (?P<limit>\d+) maximum context length",
        r"prompt is too long: (?P<requested>\d+) tokens > (?P<limit>\d+) maximum",  # Anthropic
        r"exceed context limit: (?P<input>\d+) \+ (?P<output>\d+) > (?P<limit>\d+)",  # Anthropic
        r"too many tokens in batch\. Max is (?P<limit>\d+) got (?P<requested>\d+)",  # Mistral embeddings
        r"input \((?P<requested>\d+) tokens\) is longer than the model's context length \((?P<limit>\d+) tokens\)",
    ]
]


def _token_counts(said: _Said) -> tuple[int | None, int | None]:
    """The model's context and the tokens the request needed, as far as the vendor states them."""
    for pattern in _COUNTS:
        if match := pattern.search(said.message):
            found = {name: int(value) for name, value in match.groupdict().items() if value is not None}
            requested = found.get("requested")
            if requested is None and "input" in found:
                requested = found["input"] + found.get("output", 0)
            return found.get("limit"), requested
    return said.limit_tokens, said.prompt_tokens


# ---- small readers -------------------------------------------------------------------------------------------


def _one_line(text: str) -> str:
    line = " ".join(text.split()) or "no details"
    return line if len(line) <= MESSAGE_CHARS else line[: MESSAGE_CHARS - 1] + "…"


def _text(raw: str) -> str:
    """A text body as words: a proxy's HTML error page loses its tags."""
    return re.sub(r"<[^>]+>", " ", raw) if raw.lstrip().startswith("<") else raw


def _list(value: object) -> list[object]:
    return list(value) if isinstance(value, list) else []


def _word(value: object) -> str | None:
    """A vendor code or type: a non-empty string that is not a status number (LiteLLM writes ``"400"``)."""
    if isinstance(value, str) and value.strip() and not value.strip().isdigit() and value != "None":
        return value.strip()
    return None


def _status(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if 100 <= value <= 599 else None
    if isinstance(value, str) and value.isdigit():
        return _status(int(value))
    return None


def _integer(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
