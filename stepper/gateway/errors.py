"""Error answers: FastAPI's shape (``{"detail": ...}``) on stepper's routes, OpenAI's on the OpenAI-compatible ones.

OpenAI's SDK picks its exception class from the status code and reads ``{"error": {"message", "type", "code"}}``,
so ``/v1/chat/...`` and ``/v1/models`` answer in that shape. Whatever the route, an answer never carries a key:
messages that come from the workers go through the deployment's redactor first.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from redis.exceptions import RedisError
from starlette.exceptions import HTTPException

from stepper.errors import BrokerUnavailable, InvalidRequest
from stepper.gateway.auth import RateLimitExceeded

log = logging.getLogger("stepper.gateway")

OPENAI_PATHS = ("/v1/chat/", "/v1/models")
_OPENAI_TYPES = {401: "invalid_request_error", 404: "invalid_request_error", 429: "rate_limit_error"}


class ApiError(HTTPException):
    """An HTTP error with a machine-readable ``code`` (OpenAI's ``error.code``)."""

    def __init__(
        self, status: int, message: str, code: str, *, auth: bool = False, headers: dict[str, str] | None = None
    ) -> None:
        if auth:
            headers = {**(headers or {}), "WWW-Authenticate": "Bearer"}
        super().__init__(status, message, headers)
        self.code = code


def is_openai_path(request: Request) -> bool:
    return request.url.path.startswith(OPENAI_PATHS)


def error_response(
    request: Request,
    status: int,
    message: str,
    code: str,
    *,
    param: str | None = None,
    headers: Mapping[str, str] | None = None,
    detail: Any = None,
) -> JSONResponse:
    if is_openai_path(request):
        kind = _OPENAI_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
        body: dict[str, Any] = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    else:
        body = {"detail": message if detail is None else detail, "code": code}
    return JSONResponse(jsonable_encoder(body), status_code=status, headers=dict(headers or {}))


def install_error_handlers(app: FastAPI) -> None:
    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        code = getattr(exc, "code", None) or _default_code(exc.status_code)
        return error_response(request, exc.status_code, str(exc.detail), code, headers=exc.headers)

    async def validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        problems = [_problem(error) for error in exc.errors()]
        first = problems[0] if problems else {"loc": [], "msg": "invalid request"}
        message = "; ".join(f"{'.'.join(map(str, p['loc']))}: {p['msg']}" for p in problems) or "invalid request"
        param = ".".join(str(part) for part in first["loc"][1:]) or None
        return error_response(request, 422, message, "invalid_request", param=param, detail=problems)

    async def invalid_request(request: Request, exc: Exception) -> JSONResponse:
        # Raised deeper than the body's own model (a refused callback_url, a chat over its token budget).
        message = str(exc)
        detail = [{"loc": ["body"], "msg": message, "type": "invalid_request"}]
        return error_response(request, 422, message, "invalid_request", detail=detail)

    async def rate_limited(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RateLimitExceeded)
        message = f"rate limit of this API key reached; retry after {exc.retry_after_s} s"
        headers = {"Retry-After": str(exc.retry_after_s)}
        return error_response(request, 429, message, "rate_limit_exceeded", headers=headers)

    async def redis_down(request: Request, exc: Exception) -> JSONResponse:
        log.error("Redis unreachable while serving %s: %s", request.url.path, type(exc).__name__)
        return error_response(request, 503, "the fleet's Redis is unreachable; try again later", "redis_unavailable")

    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(InvalidRequest, invalid_request)
    app.add_exception_handler(RateLimitExceeded, rate_limited)
    app.add_exception_handler(RedisError, redis_down)
    app.add_exception_handler(BrokerUnavailable, redis_down)  # stepper.submit's word for the same


def _problem(error: Any) -> dict[str, Any]:
    """FastAPI's error entry without ``input`` and ``ctx``: the caller's own (possibly huge) input is not echoed."""
    return {"loc": list(error.get("loc", ())), "msg": str(error.get("msg", "")), "type": str(error.get("type", ""))}


def _default_code(status: int) -> str:
    return {404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}.get(status, f"http_{status}")
