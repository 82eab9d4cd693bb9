"""Where audio and thumbnails go: results carry a reference, never megabytes in the result backend.

``ArtifactStore`` is the interface an object store can implement later; ``LocalArtifactStore`` keeps files in
a directory, named by their SHA-256 (so the same bytes are stored once), and deletes them after the TTL.
Artifacts smaller than ``inline_max_bytes`` are returned inline as ``data:`` URIs instead.
"""

from __future__ import annotations

import base64
import hashlib
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from stepper.config import ArtifactSettings

#: How often (seconds) one process sweeps expired artifacts, piggybacked on writes.
SWEEP_INTERVAL_S = 600.0


@dataclass(frozen=True)
class ArtifactRef:
    uri: str
    bytes: int
    sha256: str
    format: str


class ArtifactStore(Protocol):
    def put(self, data: bytes, extension: str) -> ArtifactRef: ...

    def sweep(self) -> int:
        """Delete expired artifacts; returns how many."""


class LocalArtifactStore:
    def __init__(self, directory: str | Path, ttl_s: float) -> None:
        self.directory = Path(directory)
        self.ttl_s = ttl_s
        self._last_sweep = 0.0

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


def save_artifact(
    data: bytes, extension: str, mime_type: str, store: ArtifactStore, settings: ArtifactSettings
) -> ArtifactRef:
    """Inline when small, in the store otherwise."""
    if len(data) <= settings.inline_max_bytes:
        digest = hashlib.sha256(data).hexdigest()
        return ArtifactRef(f"data:{mime_type};base64,{base64.b64encode(data).decode()}", len(data), digest, extension)
    return store.put(data, extension)
