"""Token counts without a tokenizer download (these machines, and many production ones, have no internet).

The estimate reserves budget before a call; the vendor's own usage figures settle it afterwards. For English
prose and code, BPE tokenizers average three to four characters per token, so dividing by three
over-estimates a little: a budget built on it leaves room rather than overflowing.
"""

from __future__ import annotations

import math

CHARS_PER_TOKEN = 3.0
#: Role markers and separators each chat message costs beyond its text.
TOKENS_PER_MESSAGE = 4


def estimate_tokens(text: str) -> int:
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def estimate_message_tokens(content: str) -> int:
    return estimate_tokens(content) + TOKENS_PER_MESSAGE
