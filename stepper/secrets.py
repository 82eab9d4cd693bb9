"""Where secrets come from: one small resolver, so that no module reads keys its own way.

A secret named ``OPENAI_API_KEY`` is read from that environment variable, or else from the file named by
``OPENAI_API_KEY_FILE`` (how Docker and Kubernetes mount secrets). Secrets are never logged or returned.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from stepper.errors import ConfigError


def resolve_secret(name: str, environ: Mapping[str, str] | None = None) -> str | None:
    """The secret's value, or None when neither ``NAME`` nor ``NAME_FILE`` is set."""
    environ = os.environ if environ is None else environ
    if value := environ.get(name, "").strip():
        return value
    if path := environ.get(f"{name}_FILE", "").strip():
        try:
            return Path(path).read_text(encoding="utf-8").strip() or None
        except OSError as exc:
            raise ConfigError(f"{name}_FILE names {path!r}, which cannot be read ({exc.strerror})") from None
        except UnicodeDecodeError:
            # The exception would carry the file's bytes, the secret itself: never let it travel.
            raise ConfigError(f"{name}_FILE names {path!r}, which is not UTF-8 text") from None
    return None
