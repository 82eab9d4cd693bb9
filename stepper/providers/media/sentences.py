"""Splitting text for speech engines that take a limited amount per call: at sentence ends, never inside
an abbreviation (``e.g.``, ``Dr.``), an initial (``J. Smith``) or a decimal (``3.5``).

A sentence ends at ``.``, ``!``, ``?`` or ``…`` (closing quotes and brackets included) followed by white space,
or at a blank line. Sentences are packed greedily into pieces within the limit; a sentence longer than the
limit is cut at its last clause mark (``,;:``), else its last space, within the limit.
"""

from __future__ import annotations

import re
from collections.abc import Callable

#: Words that end with a full stop without ending the sentence, lowercased, without their final stop.
ABBREVIATIONS = frozenset(
    {
        *("mr", "mrs", "ms", "dr", "prof", "st", "sr", "jr", "mt", "rev", "gen", "col", "capt", "lt", "sgt"),
        *("e.g", "i.e", "cf", "vs", "viz", "al", "approx", "ca", "inc", "ltd", "corp", "dept", "z.b", "bzw"),
        *("jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec"),
    }
)
#: Abbreviations only when a number follows ("No. 5", "Fig. 3"): "the answer is no. Then" ends a sentence.
NUMBER_ABBREVIATIONS = frozenset({"no", "nos", "fig", "figs", "vol", "pp", "ch", "sec", "art", "nr"})
#: A candidate end: terminal punctuation, then closing quotes or brackets, then white space.
_END = re.compile(r"[.!?\u2026]+[\"'\u201d\u2019\u00bb)\]]*(?=\s)")  # ellipsis, closing quotes
_WORD_BEFORE = re.compile(r"(\S+)$")
_BLANK_LINE = re.compile(r"\n\s*\n")
_CLAUSE_MARK = re.compile(r"[,;:]\s")

Measure = Callable[[str], int]


def split_sentences(text: str) -> list[str]:
    """``text``'s sentences in order, stripped, none empty; joined with spaces they give back its words."""
    sentences: list[str] = []
    for paragraph in _BLANK_LINE.split(text):
        start = 0
        for match in _END.finditer(paragraph):
            before, after = paragraph[start : match.start()], paragraph[match.end() :].lstrip()
            if match.group().startswith(".") and not _ends_sentence(before, after):
                continue
            sentences.append(paragraph[start : match.end()])
            start = match.end()
        sentences.append(paragraph[start:])
    return [" ".join(sentence.split()) for sentence in sentences if sentence.strip()]


def _ends_sentence(before_stop: str, after_stop: str) -> bool:
    """Whether a full stop between these ends a sentence: not after an abbreviation or an initial."""
    found = _WORD_BEFORE.search(before_stop)
    if found is None:
        return True
    word = found.group(1).lstrip("\"'\u201c\u2018\u00ab([").lower()  # opening quotes and brackets
    if word in ABBREVIATIONS or (word in NUMBER_ABBREVIATIONS and after_stop[:1].isdigit()):
        return False
    return not (len(word) == 1 and word.isalpha())  # an initial: "J. Smith", "the letter A. Then" is rare


def split_for_engine(text: str, limit: int, measure: Measure = len) -> list[str]:
    """``text`` in pieces whose ``measure`` (characters by default, or e.g. UTF-8 bytes) is at most ``limit``.

    Whole sentences are packed together, joined by a space; a sentence over ``limit`` is cut at clause marks or
    spaces, and only a single word over ``limit`` is cut inside (one character is never cut, so a byte limit
    should be at least 4). Raises ValueError when ``limit`` < 1.
    """
    if limit < 1:
        raise ValueError(f"limit must be at least 1, not {limit}")
    pieces: list[str] = []
    current = ""
    for sentence in split_sentences(text):
        for part in _cut_to_limit(sentence, limit, measure):
            joined = f"{current} {part}" if current else part
            if measure(joined) <= limit:
                current = joined
            else:
                pieces.append(current)
                current = part
    if current:
        pieces.append(current)
    return pieces


def _cut_to_limit(sentence: str, limit: int, measure: Measure) -> list[str]:
    parts: list[str] = []
    rest = sentence
    while measure(rest) > limit:
        head = _longest_prefix(rest, limit, measure)
        marks = [m.end() for m in _CLAUSE_MARK.finditer(rest[: len(head) + 1])]  # a mark ending the head counts
        cut = marks[-1] if marks and marks[-1] > len(head) // 3 else head.rfind(" ") + 1
        cut = cut if cut > 0 else len(head)  # one word longer than the limit: cut inside it
        parts.append(rest[:cut].strip())
        rest = rest[cut:].strip()
    if rest:
        parts.append(rest)
    return parts


def _longest_prefix(text: str, limit: int, measure: Measure) -> str:
    """The longest prefix of ``text`` whose measure is within ``limit`` (binary search: measure is monotonic)."""
    low, high = 1, len(text)
    while low < high:
        middle = (low + high + 1) // 2
        if measure(text[:middle]) <= limit:
            low = middle
        else:
            high = middle - 1
    return text[:low]
