"""The redactor every line leaving a process goes through: known secrets and bearer tokens, any case."""

from __future__ import annotations

import pytest

from stepper.infra.redaction import REDACTED, Redactor


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER", "BeArEr"])
def test_bearer_tokens_are_redacted_in_any_case(scheme: str) -> None:
    text = f"401 for Authorization: {scheme} abcdefgh.ijkl-mnop and more"
    assert Redactor([]).redact(text) == f"401 for Authorization: {scheme} {REDACTED} and more"


def test_known_secrets_go_and_other_text_stays_as_it_was() -> None:
    redactor = Redactor(["sk-live-123456", "short"])  # under six characters: too common to be a secret
    assert redactor.redact("key sk-live-123456 in a short line") == f"key {REDACTED} in a short line"
    plain = "Task stepper.chat[1] succeeded in 0.1s: {'kind': 'chat', 'bearing': 'north'}"
    assert redactor.redact(plain) == plain
