"""The HTTP plumbing every remote adapter shares: pooled sessions, deadlines, error mapping, SSE streams.

An adapter builds a vendor request and reads a vendor answer; everything between is here, written once:
urllib3 pools per worker process sized to the worker's concurrency (:mod:`stepper.providers.transport`), the
environment's proxy, CA bundle and netrc settings read once per provider rather than on every call, and HTTP
statuses, redirects, network failures and unreadable bodies mapped onto :mod:`stepper.errors`. The provider's
key never appears in an error, because request URLs are not quoted and any text echoed by the vendor is redacted first.

Deadlines, per provider: ``connect_timeout_s``; ``first_token_timeout_s``, the longest wait for the first
byte of the answer (the response headers of a plain call, the first text of a stream, which the adapter
reports with :meth:`HttpClient.answer_started`) and the longest silence after it; ``total_timeout_s`` for
the whole call; and the task's own deadline and cancellation. Each call runs in a
:class:`~stepper.infra.cancellation.CallScope`, so a call past a deadline or cancelled is cut at once
(:mod:`stepper.providers.transport`) and raises ``FirstTokenTimeout``, ``Timeout``, ``DeadlineExceeded`` or
``Cancelled``.
"""

from __future__ import annotations

import json
import os
import re
import ssl
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from functools import cache
from typing import Any
from urllib.parse import urlencode

import requests
from requests.adapters import HTTPAdapter
from urllib3 import Timeout as Deadlines
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
    SSLError,
)

from stepper.errors import (
    AuthError,
    Cancelled,
    ContentRejected,
    ContextOverflow,
    DeadlineExceeded,
    FirstTokenTimeout,
    ProviderError,
    RateLimited,
    Timeout,
    TruncatedOutput,
    Unavailable,
    UnsupportedInput,
    UnsupportedParameter,
)
from stepper.infra import tracing
from stepper.infra.cancellation import CallScope, TaskScope, current_call, current_task
from stepper.infra.redaction import Redactor
from stepper.providers.transport import Answer, environment_settings, json_body, send
from stepper.providers.vendor_errors import VendorError, read_vendor_error
from stepper.settings import ProviderSettings

#: How much of a vendor's error body that is not JSON is read to classify it.
ERROR_BODY_CHARS = 8192
#: A wait a vendor states in its message rather than a header.
TRY_AGAIN_IN = re.compile(r"try again in (\d+(?:\.\d+)?)(ms|s)\b", re.IGNORECASE)


@cache
def _session(pid: int) -> requests.Session:
    del pid  # part of the cache key: a forked child makes its own session
    session = requests.Session()
    adapter = HTTPAdapter(max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def session() -> requests.Session:
    """This process's ``requests`` session for stepper's own calls that are not vendor calls (alert sinks),
    trusting the environment as ``requests`` does (thread-safe for requests that do not share cookies)."""
    return _session(os.getpid())


@dataclass(frozen=True)
class SseEvent:
    event: str
    data: str

    def json_object(self, provider: str) -> dict[str, Any]:
        """The event's data as a JSON object; anything else means the stream is broken."""
        try:
            value = json.loads(self.data)
        except json.JSONDecodeError:
            raise TruncatedOutput(f"{provider} sent an event that is not JSON") from None
        if not isinstance(value, dict):
            raise TruncatedOutput(f"{provider} sent an event that is not a JSON object")
        return value


class HttpClient:
    """One provider's view of the shared session: its base URL, deadlines, key and name for messages."""

    def __init__(self, settings: ProviderSettings, default_base_url: str, api_key: str | None) -> None:
        self.name = settings.name
        self.base_url = (settings.base_url or default_base_url).rstrip("/")
        self.first_token_timeout_s = settings.first_token_timeout_s
        self.total_timeout_s = settings.total_timeout_s
        self.connect_timeout_s = settings.connect_timeout_s
        #: urllib3's connect and read timeouts; the read timeout bounds any silence of the server's.
        self.timeout = Deadlines(connect=settings.connect_timeout_s, read=settings.first_token_timeout_s)
        self._environment = environment_settings(self.base_url)
        self.redact = Redactor([api_key] if api_key else []).redact

    def post_json(
        self, path: str, payload: Mapping[str, Any], headers: Mapping[str, str], params: Mapping[str, str] | None = None
    ) -> Any:
        """POST JSON, return the decoded JSON answer, or raise the mapped error."""
        with self._call() as call:
            response = self._send(call, "POST", path, payload, headers, params=params)
            return self._json(response, self._body(response, call))

    def get_json(self, path: str, headers: Mapping[str, str], params: Mapping[str, str] | None = None) -> Any:
        with self._call() as call:
            response = self._send(call, "GET", path, None, headers, params=params)
            return self._json(response, self._body(response, call))

    def post_bytes(
        self, path: str, payload: Mapping[str, Any], headers: Mapping[str, str], params: Mapping[str, str] | None = None
    ) -> tuple[bytes, str]:
        """POST JSON, return the raw answer (audio, images) and its Content-Type."""
        with self._call() as call:
            response = self._send(call, "POST", path, payload, headers, params=params)
            return self._body(response, call), response.headers.get("Content-Type", "")

    def stream(
        self, method: str, path: str, payload: Mapping[str, Any] | None, headers: Mapping[str, str]
    ) -> Iterator[SseEvent]:
        """Send a request and yield its server-sent events; a broken stream raises a retryable error. The
        adapter calls :meth:`answer_started` at the first event that carries answer text."""
        with self._call() as call:
            response = self._send(call, method, path, payload, headers)
            with self._reading(call, response, "its event stream"):
                yield from iter_sse(response.iter_lines())

    def answer_started(self) -> None:
        """The first byte of the answer arrived: the first-token deadline no longer applies to this call."""
        if (call := current_call.get()) is not None:
            call.first_byte()

    @contextmanager
    def _call(self) -> Iterator[CallScope]:
        """One call inside the running task's scope (a scope of its own outside a task). However the call
        ended, a cut (cancellation, a deadline) is reported as such rather than as the broken read it caused."""
        task = current_task.get() or TaskScope()
        with task.call(self.first_token_timeout_s, self.total_timeout_s) as call:
            try:
                yield call
            except (HTTPError, OSError, ProviderError):
                cut = self._cut_error(call)
                if cut is None:
                    raise
                raise cut from None
            if (cut := self._cut_error(call)) is not None:  # a cut can also look like the server's clean close
                raise cut

    def _cut_error(self, call: CallScope) -> Exception | None:
        if call.ended == "cancelled":
            return Cancelled(f"the task was cancelled during its call to {self.name}; the connection was closed")
        if call.ended == "first_token":
            return self._no_answer()
        if call.ended == "total":
            return Timeout(f"{self.name} did not finish within total_timeout_s={self.total_timeout_s:g}")
        if call.ended == "deadline":
            return DeadlineExceeded(f"the request's deadline_s passed during its call to {self.name}")
        return None

    def _no_answer(self) -> FirstTokenTimeout:
        return FirstTokenTimeout(
            f"{self.name} sent no answer within first_token_timeout_s={self.first_token_timeout_s:g}"
        )

    def _silence(self, call: CallScope) -> Timeout:
        """The server went silent for a whole read timeout: before the answer started, or in its middle."""
        if not call.answered:
            return self._no_answer()
        return Timeout(f"{self.name} went silent for {self.first_token_timeout_s:g}s in the middle of its answer")

    def _body(self, response: Answer, call: CallScope) -> bytes:
        """Read a whole answer whose headers arrived (the first byte, as far as deadlines are concerned)."""
        call.first_byte()
        with self._reading(call, response, "its answer"):
            return response.content

    @contextmanager
    def _reading(self, call: CallScope, response: Answer, what: str) -> Iterator[None]:
        """Reading a response's body: a silence past the read timeout, a cut-off body and a dropped connection
        mapped onto the exception tree; the response closed however the reading ended."""
        try:
            yield
        except ReadTimeoutError:
            raise self._silence(call) from None
        except ProtocolError:  # a body shorter than announced, a broken chunk, a reset mid-body
            raise TruncatedOutput(f"{self.name} closed the connection in the middle of {what}") from None
        except (HTTPError, OSError):
            raise Unavailable(f"{self.name} dropped the connection in the middle of {what}") from None
        finally:
            response.close()

    def _json(self, response: Answer, body: bytes) -> Any:
        try:
            return json.loads(body)
        except ValueError:
            raise TruncatedOutput(f"{self.name} answered {response.status_code} with a body that is not JSON") from None

    def _send(
        self,
        call: CallScope,
        method: str,
        path: str,
        payload: Mapping[str, Any] | None,
        headers: Mapping[str, str],
        *,
        params: Mapping[str, str] | None = None,
    ) -> Answer:
        """Send the request and return once the response headers arrived (the body is read by the caller)."""
        url = f"{self.base_url}{path}"
        if params:
            url = f"{url}?{urlencode(params)}"
        outgoing = dict(headers)
        tracing.inject(outgoing)  # the vendor call joins the task's trace, when tracing is on
        body = None
        if payload is not None:
            body = json_body(payload)
            outgoing.setdefault("Content-Type", "application/json")
        try:
            response = send(self._environment, method, url, body=body, headers=outgoing, timeout=self.timeout)
        except NewConnectionError as exc:  # before ConnectTimeoutError: urllib3 derives the one from the other
            raise Unavailable(f"{self.name} could not be reached ({_reason(exc)})") from None
        except ConnectTimeoutError:
            raise Timeout(f"{self.name} did not accept a connection within {self.connect_timeout_s:g}s") from None
        except ReadTimeoutError:
            raise self._no_answer() from None
        except SSLError as exc:
            raise self._tls_error(exc) from None
        except (HTTPError, OSError) as exc:
            raise Unavailable(f"{self.name} could not be reached ({_reason(exc)})") from None
        if response.status_code >= 400:
            try:
                response.content  # noqa: B018  (read the error body within the call's deadlines)
            except (HTTPError, OSError):
                pass  # the status says enough
            finally:
                response.close()
            raise self.error_for(response)
        if response.status_code >= 300:
            response.close()
            location = response.headers.get("Location", "elsewhere")
            raise UnsupportedInput(
                f"{self.name} answered {response.status_code}, redirecting to {self.redact(location)}: vendor calls "
                "do not follow redirects; set its base_url to where it is served"
            )
        return response

    def _tls_error(self, exc: SSLError) -> ProviderError:
        """A certificate this worker does not trust is a setting to change, not a fault to retry: AuthError
        (the next provider, no breaker trip), saying which CA bundle is read. Any other TLS failure (a
        handshake cut short, no shared protocol) is Unavailable, naming OpenSSL's reason."""
        cause = _innermost(exc)
        if isinstance(cause, ssl.SSLCertVerificationError):
            return AuthError(
                f"{self.name}'s TLS certificate is not trusted ({cause.verify_message}); if a proxy or a private "
                f"CA signs it, set REQUESTS_CA_BUNDLE to that CA's PEM bundle (read now: {self._environment.ca_bundle})"
            )
        reason = getattr(cause, "reason", None) or type(cause).__name__
        return Unavailable(f"{self.name} could not be reached: the TLS handshake failed ({reason})")

    def error_for(self, response: Answer) -> ProviderError:
        """Map an HTTP error answer onto the exception tree by what the vendor says it means (see
        :mod:`stepper.providers.vendor_errors`), quoting its reason readably and redacted."""
        meaning = read_vendor_error(response.status_code, _decoded(response))
        wait_s = rate_limit_hint(response)
        if wait_s is None and (said := TRY_AGAIN_IN.search(meaning.message)):  # OpenAI: "Please try again in 9.8s"
            wait_s = float(said.group(1)) / (1000 if said.group(2) == "ms" else 1)
        return self.exception_for(meaning, f"{self.name} answered {response.status_code}", wait_s)

    def stream_error(self, body: Mapping[str, Any]) -> ProviderError:
        """The error object a server sent inside a 200 event stream (vLLM, llama.cpp, LiteLLM do), mapped
        like an error answer."""
        meaning = read_vendor_error(200, dict(body))
        return self.exception_for(meaning, f"{self.name} failed mid-stream", None)

    def exception_for(self, error: VendorError, prefix: str, retry_after_s: float | None) -> ProviderError:
        """The exception for a classified vendor error. A request the vendor refused for a reason it does not
        name (a 400 or 422) is this provider's limit, not the caller's fault: the chain moves on."""
        message = f"{prefix}: {self.redact(error.message)}"
        if error.meaning == "context_overflow":
            return ContextOverflow(message, error.requested_tokens)
        if error.meaning == "unsupported_parameter" and error.param:
            return UnsupportedParameter(message, error.param)
        if error.meaning == "rate_limited" or (error.meaning == "overloaded" and error.status == 429):
            return RateLimited(message, retry_after_s)  # busy is not broken: no breaker failure (TGI sheds load so)
        if error.meaning in {"overloaded", "server_error"}:
            return Unavailable(message, retry_after_s)
        if error.meaning in {"quota_exhausted", "auth"}:
            advice = (
                "the account's quota or billing is exhausted: check it"
                if error.meaning == "quota_exhausted"
                else f"check the key in {self.name}'s api_key_env"
            )
            return AuthError(f"{message}; {advice}")
        return ContentRejected(message) if error.meaning == "content_policy" else UnsupportedInput(message)


def _decoded(response: Answer) -> Any:
    """The body as JSON when it is JSON, else its text (enough of it to find the words that say what it means;
    vendor_errors shortens the message it keeps)."""
    try:
        return response.json()
    except ValueError:
        return response.text[:ERROR_BODY_CHARS]


def rate_limit_hint(response: Answer) -> float | None:
    """Seconds the vendor asks us to wait: ``Retry-After`` (RFC 9110), else ``retry-after-ms`` (OpenAI, Azure),
    else the later of OpenAI's ``x-ratelimit-reset-requests`` / ``-tokens`` durations (``1s``, ``6m0s``, ``20ms``)."""
    headers = response.headers
    if (retry_after := parse_retry_after(headers.get("Retry-After"))) is not None:
        return retry_after
    try:
        return max(0.0, float(headers["retry-after-ms"]) / 1000)
    except (KeyError, ValueError):
        pass
    resets = [parse_duration(headers.get(f"x-ratelimit-reset-{kind}")) for kind in ("requests", "tokens")]
    known = [reset for reset in resets if reset is not None]
    return max(known) if known else None


def parse_duration(value: str | None) -> float | None:
    """A Go-style duration as OpenAI's rate-limit headers write it (``1s``, ``6m0s``, ``1h2m3.5s``, ``20ms``),
    in seconds; None when it is not one."""
    if not value:
        return None
    total, number = 0.0, ""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    rest = value.strip()
    while rest:
        if rest[0].isdigit() or rest[0] == ".":
            number, rest = number + rest[0], rest[1:]
            continue
        unit = "ms" if rest.startswith("ms") else rest[0]
        if unit not in units or not number:
            return None
        try:
            total += float(number) * units[unit]
        except ValueError:
            return None
        number, rest = "", rest[len(unit) :]
    return None if number else total


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Retry-After as seconds: either delay-seconds or an HTTP-date (RFC 9110 section 10.2.3)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def iter_sse(lines: Iterator[str]) -> Iterator[SseEvent]:
    """Parse a text/event-stream by the HTML standard's rules: ``event:``/``data:`` fields, dispatch on a blank
    line; an event cut off before its blank line is dropped, so a truncated stream never yields half an event."""
    event, data = "message", list[str]()
    for line in lines:
        if line == "":
            if data:
                yield SseEvent(event, "\n".join(data))
            event, data = "message", []
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "event":
            event = value
        elif field == "data":
            data.append(value)


def _reason(exc: BaseException) -> str:
    """The innermost cause's type, without the URL (which may carry a key in its query string)."""
    return type(_innermost(exc)).__name__


def _innermost(exc: BaseException) -> BaseException:
    cause = exc
    while cause.__cause__ is not None or cause.__context__ is not None:
        cause = cause.__cause__ or cause.__context__  # type: ignore[assignment]
    return cause
