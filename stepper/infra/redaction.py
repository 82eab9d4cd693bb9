"""One redactor for everything that leaves a process: log lines, dead letters, vendor errors, gateway answers.

Two kinds of redaction, both here: known secret values (each provider's key, the webhook secret) and bearer
tokens are removed from any text (:class:`Redactor`); JSON values kept for long (dead letters) also lose every
field whose name says it is a secret and the credentials inside URLs (:func:`redact`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import unquote_plus, urlsplit, urlunsplit

from stepper.config import current_settings
from stepper.secrets import resolve_secret

REDACTED = "[redacted]"
_BEARER = re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=-]{8,}")
#: A key whose name contains one of these (any case) holds a secret.
SENSITIVE_NAME = re.compile(r"key|token|secret|password|authorization", re.IGNORECASE)
#: stepper's own request fields that match SENSITIVE_NAME but are not secrets; redacting them would make
#: every chat request with ``max_tokens`` and every request with an ``idempotency_key`` unreplayable.
NOT_SECRETS = frozenset({"max_tokens", "idempotency_key"})


class Redactor:
    """Replaces known secret values, and anything sent as a bearer token, in a text."""

    def __init__(self, secrets: Iterable[str]) -> None:
        # Longest first, so a secret containing another is replaced whole.
        self.secrets = sorted({secret for secret in secrets if len(secret) >= 6}, key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, REDACTED)
        # The pattern is slow to scan (about 10 µs on a log line, and every line passes here); most text has no
        # bearer token at all.
        return _BEARER.sub(rf"\g<1>{REDACTED}", text) if "bearer" in text.lower() else text


def configured_secrets() -> list[str]:
    """Every secret this deployment knows of: each provider's key and the webhook signing secret."""
    settings = current_settings()
    names = [p.api_key_env for p in settings.providers.values() if p.api_key_env] + [settings.webhooks.secret_env]
    values = []
    for name in names:
        try:
            value = resolve_secret(name)
        except Exception:  # noqa: BLE001, S112  (an unreadable secret file is reported where the secret is used)
            continue
        if value:
            values.append(value)
    return values


def redact(value: Any) -> Any:
    """A copy of a JSON value with its secrets replaced by ``[redacted]``.

    A key whose name contains key, token, secret, password or authorization (any case) has its value
    replaced, whatever it holds (None stays None: there is nothing to hide); an http(s) URL anywhere loses its
    userinfo and the values of query (and fragment) parameters with such names. Everything else is unchanged.
    """
    if isinstance(value, Mapping):
        return {key: _redact_item(str(key), item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [redact(item) for item in value]
    if isinstance(value, str) and value[:8].lower().startswith(("http://", "https://")):
        return redact_url(value)
    return value


def redact_url(url: str) -> str:
    """The URL without its userinfo (``[redacted]@`` instead) and with sensitive parameter values redacted."""
    try:
        parts = urlsplit(url)
    except ValueError:  # not parseable (a broken IPv6 host): no way to tell which part is secret
        return REDACTED
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{REDACTED}@{netloc.rpartition('@')[2]}"
    return urlunsplit((parts.scheme, netloc, parts.path, _redact_params(parts.query), _redact_params(parts.fragment)))


def contains_redacted(value: Any) -> bool:
    """Whether ``[redacted]`` appears anywhere in a JSON value (a key, a value, inside a URL)."""
    if isinstance(value, Mapping):
        return any(REDACTED in str(key) or contains_redacted(item) for key, item in value.items())
    if isinstance(value, list | tuple):
        return any(contains_redacted(item) for item in value)
    return isinstance(value, str) and REDACTED in value


def _is_secret_name(name: str) -> bool:
    return SENSITIVE_NAME.search(name) is not None and name.lower() not in NOT_SECRETS


def _redact_item(key: str, item: Any) -> Any:
    return REDACTED if item is not None and _is_secret_name(key) else redact(item)


def _redact_params(text: str) -> str:
    """``a=1&token=x`` -> ``a=1&token=[redacted]``; other parameters are kept byte for byte."""
    if "=" not in text:
        return text
    params = []
    for param in text.split("&"):
        name, equals, value = param.partition("=")
        params.append(f"{name}={REDACTED}" if equals and value and _is_secret_name(unquote_plus(name)) else param)
    return "&".join(params)
