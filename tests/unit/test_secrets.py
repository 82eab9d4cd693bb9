"""Where secrets come from: NAME, else the file NAME_FILE names; never echoed in an error."""

from __future__ import annotations

from pathlib import Path

import pytest

from stepper.errors import ConfigError
from stepper.secrets import resolve_secret

SECRET = "sk-live-0123456789abcdef"


def test_reads_the_variable() -> None:
    assert resolve_secret("API_KEY", {"API_KEY": SECRET}) == SECRET


def test_strips_the_variable() -> None:
    assert resolve_secret("API_KEY", {"API_KEY": f"  {SECRET}\n"}) == SECRET


def test_variable_wins_over_file(tmp_path: Path) -> None:
    path = tmp_path / "key"
    path.write_text("from-the-file", encoding="utf-8")
    assert resolve_secret("API_KEY", {"API_KEY": SECRET, "API_KEY_FILE": str(path)}) == SECRET


@pytest.mark.parametrize("value", ["", "   ", "\n"])
def test_blank_variable_falls_back_to_the_file(tmp_path: Path, value: str) -> None:
    path = tmp_path / "key"
    path.write_text(f"\n{SECRET}\n\n", encoding="utf-8")
    assert resolve_secret("API_KEY", {"API_KEY": value, "API_KEY_FILE": str(path)}) == SECRET


def test_reads_the_file_stripped(tmp_path: Path) -> None:
    path = tmp_path / "key"
    path.write_text(f"  {SECRET}\r\n", encoding="utf-8")
    assert resolve_secret("API_KEY", {"API_KEY_FILE": str(path)}) == SECRET


def test_blank_file_is_no_secret(tmp_path: Path) -> None:
    path = tmp_path / "key"
    path.write_text(" \n", encoding="utf-8")
    assert resolve_secret("API_KEY", {"API_KEY_FILE": str(path)}) is None


@pytest.mark.parametrize("environ", [{}, {"API_KEY": ""}, {"API_KEY_FILE": "  "}, {"OTHER_KEY": SECRET}])
def test_none_when_neither_is_set(environ: dict[str, str]) -> None:
    assert resolve_secret("API_KEY", environ) is None


def test_reads_the_process_environment_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STEPPER_TEST_SECRET", SECRET)
    assert resolve_secret("STEPPER_TEST_SECRET") == SECRET
    monkeypatch.delenv("STEPPER_TEST_SECRET")
    monkeypatch.delenv("STEPPER_TEST_SECRET_FILE", raising=False)
    assert resolve_secret("STEPPER_TEST_SECRET") is None


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "no-such-key"
    with pytest.raises(ConfigError) as raised:
        resolve_secret("API_KEY", {"API_KEY": " ", "API_KEY_FILE": str(path), "OTHER_KEY": SECRET})
    message = str(raised.value)
    assert "API_KEY_FILE" in message
    assert str(path) in message
    assert "No such file or directory" in message
    assert SECRET not in message
    assert raised.value.__cause__ is None


def test_directory_instead_of_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="API_KEY_FILE"):
        resolve_secret("API_KEY", {"API_KEY_FILE": str(tmp_path)})


def test_undecodable_file_is_a_config_error_without_the_secret(tmp_path: Path) -> None:
    path = tmp_path / "key"
    path.write_bytes(b"sk-\xff" + SECRET.encode())
    with pytest.raises(ConfigError) as raised:
        resolve_secret("API_KEY", {"API_KEY_FILE": str(path)})
    assert SECRET not in repr(raised.value.args)
