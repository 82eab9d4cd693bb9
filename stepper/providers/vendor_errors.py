"""PLACEHOLDER until the researched classification lands (status codes only)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

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


@dataclass(frozen=True)
class VendorError:
    status: int
    meaning: Meaning
    message: str
    code: str | None = None
    param: str | None = None
    limit_tokens: int | None = None
    requested_tokens: int | None = None


def read_vendor_error(status: int, body: object) -> VendorError:
    meaning: Meaning = (
        "rate_limited"
        if status == 429
        else "auth"
        if status in {401, 403}
        else "not_found"
        if status == 404
        else "server_error"
        if status >= 500 or status in {408, 409}
        else "bad_request"
    )
    if isinstance(body, dict) and "API_KEY_INVALID" in json.dumps(body):
        meaning = "auth"
    return VendorError(status, meaning, _readable(body))


def _readable(body: Any) -> str:
    if isinstance(body, str):
        return body[:300].strip() or "no details"
    if isinstance(body, list) and body:
        body = body[0]
    if isinstance(body, dict):
        for field in (body.get("error"), body.get("message"), body.get("detail")):
            candidate = _message_in(field)
            if candidate:
                return candidate[:300]
    return json.dumps(body)[:300]


def _message_in(field: Any) -> str | None:
    if isinstance(field, dict):
        field = field.get("message")
    elif isinstance(field, list):
        field = "; ".join(
            ".".join(str(part) for part in item.get("loc") or ()) + ": " + str(item.get("msg"))
            for item in field
            if isinstance(item, dict)
        )
    return field if isinstance(field, str) else None
