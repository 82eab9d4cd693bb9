"""The local artifact store: content-addressed files, inline small ones, expiry."""

from __future__ import annotations

import base64
import hashlib
import os
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit

from stepper.infra.artifacts import LocalArtifactStore


def path_of(uri: str) -> Path:
    return Path(unquote(urlsplit(uri).path))


def test_large_artifacts_are_files_named_by_their_digest(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path, ttl_s=60, inline_max_bytes=10)
    data = b"x" * 100
    ref = store.save(data, "wav", "audio/wav")
    assert ref.sha256 == hashlib.sha256(data).hexdigest() and ref.bytes == 100 and ref.format == "wav"
    assert ref.uri.startswith("file://") and path_of(ref.uri).read_bytes() == data
    assert path_of(ref.uri).name == f"{ref.sha256}.wav"
    assert store.save(data, "wav", "audio/wav") == ref  # the same bytes are stored once
    assert len(list(tmp_path.glob("*/*"))) == 1


def test_small_artifacts_come_inline(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path, ttl_s=60, inline_max_bytes=10)
    ref = store.save(b"tiny", "png", "image/png")
    assert ref.uri == "data:image/png;base64," + base64.b64encode(b"tiny").decode()
    assert list(tmp_path.iterdir()) == []


def test_sweep_removes_only_expired_artifacts(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path, ttl_s=60)
    old = path_of(store.save(b"old" * 10, "wav", "audio/wav").uri)
    fresh = path_of(store.save(b"new" * 10, "wav", "audio/wav").uri)
    long_ago = time.time() - 3600
    os.utime(old, (long_ago, long_ago))
    assert store.sweep() == 1
    assert not old.exists() and fresh.exists()
