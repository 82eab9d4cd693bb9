"""The HTTP plumbing every remote adapter shares: pooled sessions, timeouts, error mapping, SSE streams.

An adapter builds a vendor request and reads a vendor answer; everything between is here, written once:
one ``requests.Session`` per worker process with a pool sized to the worker's concurrency, the environment's
proxy, CA bundle and netrc settings read once per provider rather than on every call, connect and read
timeouts from the provider's settings, and HTTP statuses, network failures and unreadable bodies mapped onto
:mod:`stepper.errors`. The provider's key never appears in an error, because request URLs are not quoted
and any text echoed by the vendor is redacted first.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from functools import cache
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from requests.utils import get_environ_proxies, get_netrc_auth

from stepper.errors import (
    AuthError,
    InvalidRequest,
    ProviderError,
    RateLimited,
    Timeout,
    TruncatedOutput,
    Unavailable,
    UnsupportedInput,
)
from stepper.infra import tracing
from stepper.infra.redaction import Redactor
from stepper.settings import ProviderSettings

#: Connections kept per host in each process; raised to the worker's concurrency at start-up.
_pool_size = 10
#: How much of a vendor's error body is quoted in an error message.
ERROR_DETAIL_CHARS = 300


def configure_pool(size: int) -> None:
    """Size the per-process connection pool (called with the worker's concurrency before any request)."""
    global _pool_size  # noqa: PLW0603  (one setting per process, set once at worker start-up)
    _pool_size = max(1, size)


@cache
def _session(pid: int, pool_size: int, trust_env: bool) -> requests.Session:
    del pid  # part of the cache key: a forked child makes its own session
    session = requests.Session()
    session.trust_env = trust_env
    adapter = HTTPAdapter(pool_connections=pool_size, pool_maxsize=pool_size, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def session() -> requests.Session:
    """This process's shared session (thread-safe for requests that do not share cookies)."""
    return _session(os.getpid(), _pool_size, True)


def _provider_session() -> requests.Session:
    """The session providers call through: it does not read the environment itself, each ``HttpClient`` has.

    A session that trusts the environment looks up proxies (every variable, twice), the CA bundle variables
    and ~/.netrc on every request: a third of requests' CPU per call, which the threads pool shares under
    one GIL. The answer cannot change while a worker runs, so ``environment_settings`` reads it once.
    """
    return _session(os.getpid(), _pool_size, False)


@dataclass(frozen=True)
class EnvironmentSettings:
    """What a trusting session would take from the environment for one base URL."""

    proxies: dict[str, str]
    verify: bool | str
    auth: tuple[str, str] | None


def environment_settings(url: str) -> EnvironmentSettings:
    """Proxies (honouring NO_PROXY), REQUESTS_CA_BUNDLE or CURL_CA_BUNDLE, and netrc credentials for ``url``,
    exactly as ``requests`` finds them when ``trust_env`` is on."""
    verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
    return EnvironmentSettings(get_environ_proxies(url), verify, get_netrc_auth(url))


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
    """One provider's view of the shared session: its base URL, timeouts, key and name for messages."""

    def __init__(self, settings: ProviderSettings, default_base_url: str, api_key: str | None) -> None:
        self.name = settings.name
        self.base_url = (settings.base_url or default_base_url).rstrip("/")
        self.timeout = (settings.connect_timeout_s, settings.timeout_s)
        self._environment = environment_settings(self.base_url)
        self.redact = Redactor([api_key] if api_key else []).redact

    def post_json(
        self, path: str, payload: Mapping[str, Any], headers: Mapping[str, str], params: Mapping[str, str] | None = None
    ) -> Any:
        """POST JSON, return the decoded JSON answer, or raise the mapped error."""
        return self._json(self._send("POST", path, payload, headers, stream=False, params=params))

    def get_json(self, path: str, headers: Mapping[str, str], params: Mapping[str, str] | None = None) -> Any:
        return self._json(self._send("GET", path, None, headers, stream=False, params=params))

    def post_bytes(
        self, path: str, payload: Mapping[str, Any], headers: Mapping[str, str], params: Mapping[str, str] | None = None
    ) -> tuple[bytes, str]:
        """POST JSON, return the raw answer (audio, images) and its Content-Type."""
        response = self._send("POST", path, payload, headers, stream=False, params=params)
        return response.content, response.headers.get("Content-Type", "")

    def stream(
        self, method: str, path: str, payload: Mapping[str, Any] | None, headers: Mapping[str, str]
    ) -> Iterator[SseEvent]:
        """Send a request and yield its server-sent events; a broken stream raises a retryable error."""
        response = self._send(method, path, payload, headers, stream=True)
        try:
            yield from iter_sse(response.iter_lines(decode_unicode=True))
        except requests.exceptions.ChunkedEncodingError:
            raise TruncatedOutput(f"{self.name} closed its event stream in the middle") from None
        except requests.exceptions.ConnectionError:
            raise Unavailable(f"{self.name} dropped the connection during its event stream") from None
        except requests.exceptions.Timeout:
            raise Timeout(f"{self.name} stopped sending events for {self.timeout[1]:g}s") from None
        finally:
            response.close()

    def _json(self, response: requests.Response) -> Any:
        try:
            return response.json()
        except ValueError:
            raise TruncatedOutput(f"{self.name} answered {response.status_code} with a body that is not JSON") from None

    def _send(
        self,
        method: str,
        path: str,
        payload: Mapping[str, Any] | None,
        headers: Mapping[str, str],
        *,
        stream: bool,
        params: Mapping[str, str] | None = None,
    ) -> requests.Response:
        url = f"{self.base_url}{path}"
        outgoing = dict(headers)
        tracing.inject(outgoing)  # the vendor call joins the task's trace, when tracing is on
        environment = self._environment
        try:
            response = _provider_session().request(
                method,
                url,
                params=params,
                json=payload,
                headers=outgoing,
                timeout=self.timeout,
                stream=stream,
                proxies=environment.proxies,
                verify=environment.verify,
                auth=environment.auth,
            )
        except requests.exceptions.Timeout:
            raise Timeout(f"{self.name} did not answer within {self.timeout[1]:g}s") from None
        except requests.exceptions.ChunkedEncodingError:
            raise TruncatedOutput(f"{self.name} closed the connection in the middle of its answer") from None
        except requests.exceptions.ConnectionError as exc:
            raise Unavailable(f"{self.name} could not be reached ({_reason(exc)})") from None
        if response.status_code >= 400:
            error = self.error_for(response)
            response.close()
            raise error
        return response

    def error_for(self, response: requests.Response) -> ProviderError | InvalidRequest:
        """Map an HTTP error answer onto the exception tree, quoting the vendor's reason (redacted)."""
        status = response.status_code
        detail = self.redact(vendor_message(response))
        message = f"{self.name} answered {status}: {detail}"
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        if status == 429:
            return RateLimited(message, retry_after)
        if status in {408, 409} or status >= 500:
            return Unavailable(message, retry_after)
        if status in {401, 403}:
            return AuthError(f"{message}; check the key in {self.name}'s api_key_env")
        if status in {404, 405, 501}:
            return UnsupportedInput(message)
        return InvalidRequest(message)


def vendor_message(response: requests.Response) -> str:
    """The vendor's own explanation: ``error.message``, ``message`` or ``detail`` of a JSON body, else text."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:ERROR_DETAIL_CHARS].strip() or response.reason or "no details"
    if isinstance(body, list) and body:
        body = body[0]
    if isinstance(body, dict):
        for field in (body.get("error"), body.get("message"), body.get("detail")):
            candidate = _message_in(field)
            if candidate:
                return candidate[:ERROR_DETAIL_CHARS]
    return json.dumps(body)[:ERROR_DETAIL_CHARS]


def _message_in(field: Any) -> str | None:
    if isinstance(field, dict):  # {"error": {"message": ...}}, ElevenLabs' {"detail": {"message": ...}}
        field = field.get("message")
    elif isinstance(field, list):  # FastAPI-style validation errors: [{"loc", "msg", "type"}]
        field = "; ".join(str(item.get("msg")) for item in field if isinstance(item, dict))
    return field if isinstance(field, str) else None


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


def _reason(exc: requests.exceptions.ConnectionError) -> str:
    """The innermost cause, without the URL (which may carry a key in its query string)."""
    cause: BaseException = exc
    while cause.__cause__ is not None or cause.__context__ is not None:
        cause = cause.__cause__ or cause.__context__  # type: ignore[assignment]
    return type(cause).__name__
