"""``stepper providers``: the local engines' installed OCR languages and espeak-ng voices, human and JSON."""

from __future__ import annotations

import json
from typing import Any

import pytest

from stepper.cli import main
from stepper.providers.engines.ocr import installed_languages
from stepper.providers.espeak import installed_voices
from tests.support.binaries import require_binary


def listing(capsys: pytest.CaptureFixture[str]) -> dict[str, dict[str, Any]]:
    assert main(["providers", "--json"]) == 0
    return {row["name"]: row for row in json.loads(capsys.readouterr().out)}


def test_json_gives_tesseracts_languages_and_espeaks_voice_count(capsys: pytest.CaptureFixture[str]) -> None:
    require_binary("tesseract", "tesseract-ocr")
    require_binary("espeak-ng", "espeak-ng")
    rows = listing(capsys)
    assert rows["tesseract"]["details"] == {"languages": sorted(installed_languages())}
    assert "eng" in rows["tesseract"]["details"]["languages"]
    assert rows["espeak"]["details"] == {"voices": len(installed_voices())} and len(installed_voices()) > 10
    assert rows["openai"]["details"] == {}  # a vendor has nothing installed here


def test_the_human_listing_shows_them_after_ready(capsys: pytest.CaptureFixture[str]) -> None:
    require_binary("tesseract", "tesseract-ocr")
    require_binary("espeak-ng", "espeak-ng")
    assert main(["providers"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines() if line.startswith("  ")}
    assert lines["tesseract"].endswith(f"ready  languages={','.join(sorted(installed_languages()))}")
    assert lines["espeak"].endswith(f"ready  voices={len(installed_voices())}")


def test_an_engine_that_is_not_installed_has_no_details(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("stepper.providers.espeak.shutil.which", lambda name: None)
    rows = listing(capsys)
    assert rows["espeak"]["available"] is False and rows["espeak"]["details"] == {}
