"""Where audio and thumbnails go: results carry a reference, never megabytes in the result backend.

``ArtifactStore`` is the interface an object store can implement later (and ``set_artifact_store``
plugs it in); ``LocalArtifactStore`` keeps files in a directory, named by their SHA-256 (so the same bytes are
stored once), and deletes them after the TTL. Artifacts smaller than ``inline_max_bytes`` come back inline as
``data:`` URIs instead.
"""

from __future__ import annotations

import base64
import hashlib
import os
import tempfile
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlsplit

from stepper.config import current_settings
from stepper.settings import ArtifactSettings

#: How often (seconds) one process sweeps expired artifacts, piggybacked on writes.
SWEEP_INTERVAL_S = 600.0


@dataclass(frozen=True)
class ArtifactRef:
    uri: str
    bytes: int
    sha256: str
    format: str


class ArtifactStore(Protocol):
    def save(self, data: bytes, extension: str, mime_type: str) -> ArtifactRef:
        """Store ``data`` (or inline it when small) and return its reference."""

    def sweep(self) -> int:
        """Delete expired artifacts; returns how many."""


class LocalArtifactStore:
    def __init__(self, directory: str | Path, ttl_s: float, inline_max_bytes: int = 0) -> None:
        self.directory = Path(directory)
        self.ttl_s = ttl_s
        self.inline_max_bytes = inline_max_bytes
        self._last_sweep = 0.0

    @classmethod
    def from_settings(cls, settings: ArtifactSettings) -> LocalArtifactStore:
        return cls(settings.directory, settings.ttl_s, settings.inline_max_bytes)

    def save(self, data: bytes, extension: str, mime_type: str) -> ArtifactRef:
        if len(data) <= self.inline_max_bytes:
            digest = hashlib.sha256(data).hexdigest()
            return ArtifactRef(
                f"data:{mime_type};base64,{base64.b64encode(data).decode()}", len(data), digest, extension
            )
        return self.put(data, extension)

    def put(self, data: bytes, extension: str) -> ArtifactRef:
        digest = hashlib.sha256(data).hexdigest()
        path = self.directory / digest[:2] / f"{digest}.{extension}"
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            path.touch()  # the same bytes again: keep them another TTL
        else:
            with tempfile.NamedTemporaryFile(dir=path.parent, delete=False) as partial:
                partial.write(data)
            os.replace(partial.name, path)  # readers never see half a file
        if time.monotonic() - self._last_sweep > SWEEP_INTERVAL_S:
            self.sweep()
        return ArtifactRef(path.resolve().as_uri(), len(data), digest, extension)

    def sweep(self) -> int:
        self._last_sweep = time.monotonic()
        cutoff = time.time() - self.ttl_s
        removed = 0
        for path in self.directory.glob("*/*.*"):
            try:
                if path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed += 1
            except FileNotFoundError:
                continue  # another process swept it first
        return removed


_override: list[ArtifactStore] = []


@cache
def _configured_store(pid: int) -> ArtifactStore:
    del pid  # part of the cache key: a forked child makes its own
    return LocalArtifactStore.from_settings(current_settings().artifacts)


def artifact_store() -> ArtifactStore:
    """Where this process stores audio and thumbnails: the configured directory, unless replaced."""
    return _override[-1] if _override else _configured_store(os.getpid())


def set_artifact_store(store: ArtifactStore | None) -> None:
    """Replace the artifact store of this process (an object store, a test's directory); None restores it."""
    _override.clear()
    if store is not None:
        _override.append(store)


def load_artifact(uri: str, directory: str | Path | None = None) -> bytes:
    """The bytes behind an artifact reference: a ``data:`` URI's payload, or a ``file:`` URI's file, which must
    lie in the artifact ``directory`` (by default this process's store's, else the configured one).
    ``ValueError`` for any other URI, ``FileNotFoundError`` when the file expired."""
    if uri.startswith("data:"):
        header, _, payload = uri.partition(",")
        if not header.endswith(";base64"):
            raise ValueError(f"artifact data: URIs are base64; got {header!r}")
        return base64.b64decode(payload)
    if not uri.startswith("file://"):
        raise ValueError(f"not an artifact reference (data: or file: URI): {uri[:80]!r}")
    if directory is None:
        store = artifact_store()
        directory = store.directory if isinstance(store, LocalArtifactStore) else current_settings().artifacts.directory
    root = Path(directory).resolve()
    path = Path(unquote(urlsplit(uri).path)).resolve()
    if not path.is_relative_to(root):
        raise ValueError(f"{path} is outside the artifact directory {root}")
    return path.read_bytes()
