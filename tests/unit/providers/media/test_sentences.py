"""Splitting text for speech engines: at sentence ends, never inside abbreviations, initials or decimals."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stepper.providers.media.sentences import split_for_engine, split_sentences


def utf8_length(text: str) -> int:
    return len(text.encode("utf-8"))


def test_abbreviations_initials_and_decimals_stay_inside_their_sentence() -> None:
    text = (
        "Dr. Smith measured 3.5 litres, e.g. in the lab, i.e. twice. Mr. J. R. Tolkien wrote it! "
        "Was it 2.75 kg? See No. 5 and Fig. 2 on p. 3. The answer is no. Prof. Jones agreed."
    )
    assert split_sentences(text) == [
        "Dr. Smith measured 3.5 litres, e.g. in the lab, i.e. twice.",
        "Mr. J. R. Tolkien wrote it!",
        "Was it 2.75 kg?",
        "See No. 5 and Fig. 2 on p. 3.",
        "The answer is no.",
        "Prof. Jones agreed.",
    ]


def test_quotes_ellipses_and_blank_lines_end_sentences() -> None:
    text = 'He said "Stop." Then\u2026 nothing. (Really.) Next\n\nA new paragraph\nwrapped over lines'
    assert split_sentences(text) == [
        'He said "Stop."',
        "Then\u2026",
        "nothing.",
        "(Really.)",
        "Next",
        "A new paragraph wrapped over lines",
    ]


def test_sentences_are_packed_within_the_limit() -> None:
    sentences = [f"Sentence number {n} is here." for n in range(40)]
    pieces = split_for_engine(" ".join(sentences), 100)
    assert len(pieces) > 1 and all(len(piece) <= 100 for piece in pieces)
    assert " ".join(pieces) == " ".join(sentences)  # nothing lost, nothing cut inside a sentence
    assert all(piece.endswith(".") for piece in pieces)


def test_a_sentence_over_the_limit_is_cut_at_a_comma_then_a_space() -> None:
    assert split_for_engine("one two three, four five six seven eight.", 24) == [
        "one two three,",
        "four five six seven",
        "eight.",
    ]
    assert split_for_engine("x" * 25, 10) == ["x" * 10, "x" * 10, "x" * 5]


def test_the_limit_can_count_utf8_bytes() -> None:
    pieces = split_for_engine("Straße und Spaß. " * 10, 40, utf8_length)
    assert all(utf8_length(piece) <= 40 for piece in pieces)
    assert " ".join(pieces) == " ".join(["Straße und Spaß."] * 10)


def test_a_limit_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        split_for_engine("Hello.", 0)


@given(st.text(alphabet=st.sampled_from("ab .,!?\n3é"), max_size=300), st.integers(min_value=4, max_value=60))
def test_pieces_keep_every_word_within_the_limit(text: str, limit: int) -> None:
    pieces = split_for_engine(text, limit, utf8_length)  # a limit of 4 bytes holds any one character
    assert all(0 < utf8_length(piece) <= limit for piece in pieces)
    assert "".join("".join(pieces).split()) == "".join(text.split())
