"""What the fake vendors share: scripted answers and a default report built from the prompt."""

from __future__ import annotations

import json
import re
from collections import deque
from dataclasses import dataclass, field


@dataclass
class Script:
    """Answers a fake gives, in order; when empty the fake answers by its default rule."""

    contents: deque[str] = field(default_factory=deque)
    finish_reasons: deque[str] = field(default_factory=deque)

    def next_content(self, default: str) -> str:
        return self.contents.popleft() if self.contents else default

    def next_finish(self, default: str) -> str:
        return self.finish_reasons.popleft() if self.finish_reasons else default


def default_report(prompt: str, vendor: str) -> str:
    """A valid report about the commit in ``prompt``, naming each file the prompt lists."""
    paths = re.findall(r'<file path="([^"]+)"', prompt)
    return json.dumps(
        {
            "title": f"Report by {vendor}",
            "summary": f"{vendor} read {len(paths)} file(s).",
            "changes": [{"path": path, "description": f"{vendor} saw a change"} for path in paths],
            "impact": "low",
            "tags": [vendor],
        }
    )


def words(text: str) -> list[str]:
    """Split into stream deltas that concatenate back to ``text``."""
    return re.findall(r"\S+\s*|\s+", text) or [text]
