"""The guide from its pieces: JSON (each step's thumbnail inlined, instruction and audio), Markdown, a
self-contained HTML page (thumbnails and audio inlined as data: URIs, so the one file opens anywhere,
offline), and every step's narration joined into one file."""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Sequence

from stepper.infra.artifacts import artifact_store, load_artifact
from stepper.providers.media.audio import SAMPLE_BYTES, Pcm, join_pcm, store_pcm, wav_to_pcm
from stepper.schemas.speech import Audio
from stepper.schemas.steps import Step
from stepper.workflows.schemas import Guide, GuideStep, Heading

#: Silence between two steps' narration in the joined file.
PAUSE_BETWEEN_STEPS_S = 0.6
_BOLD = re.compile(r"\*\*([^*\n]+)\*\*")
#: The mock speech provider's references (mock and hybrid modes): no file behind them, silence of their length.
MOCK_AUDIO = "mock://"
MOCK_RATE_HZ = 22_050


def assemble(
    heading: Heading, language: str, steps: Sequence[Step], instructions: Sequence[str], audio: Sequence[Audio]
) -> Guide:
    """The guide, its HTML page stored as an artifact and its narration joined (WAV) and stored."""
    guide_steps = [
        GuideStep(
            index=step.index,
            action=step.action,
            caption=step.caption,
            thumbnail=_data_uri(step.thumbnail.uri, "image/png") if step.thumbnail is not None else None,
            instruction=instruction,
            audio=spoken,
        )
        for step, instruction, spoken in zip(steps, instructions, audio, strict=True)
    ]
    narration = store_pcm(join_pcm([_pcm(spoken) for spoken in audio], PAUSE_BETWEEN_STEPS_S), "wav", "the narration")
    page = render_html(heading, language, guide_steps, narration).encode()
    return Guide(
        title=heading.title,
        summary=heading.summary,
        language=language,
        steps=guide_steps,
        markdown=render_markdown(heading, guide_steps),
        html=artifact_store().save(page, "html", "text/html").uri,
        narration=narration,
    )


def render_markdown(heading: Heading, steps: Sequence[GuideStep]) -> str:
    """Markdown that refers to each step's files by the names ``stepper workflow run --out`` writes."""
    lines = [f"# {heading.title}", "", heading.summary, "", "Narration: [narration.wav](narration.wav)", ""]
    for number, step in enumerate(steps, 1):
        lines += [f"## Step {number}", "", step.instruction, ""]
        if step.thumbnail is not None:
            lines += [f"![Step {number}](step-{number}.png)", ""]
        lines += [f"[Listen](step-{number}.{step.audio.format})", ""]
    return "\n".join(lines)


def render_html(heading: Heading, language: str, steps: Sequence[GuideStep], narration: Audio) -> str:
    """One page with everything inlined: the whole narration's player (``<audio id="narration">``), then
    ``<ol id="steps">`` with one ``<li class="step">`` per step: its instruction, picture and audio."""
    items = []
    for number, step in enumerate(steps, 1):
        picture = (
            f'<img src="{step.thumbnail}" alt="Step {number}: {html.escape(step.caption or step.action)}">'
            if step.thumbnail is not None
            else ""
        )
        sound = _player(step.audio, 'class="narration"')
        items.append(
            f'<li class="step" id="step-{number}">\n<p class="instruction">{_inline(step.instruction)}</p>\n'
            f"{picture}\n{sound}\n</li>"
        )
    title = html.escape(heading.title)
    return "\n".join(
        [
            "<!DOCTYPE html>",
            f'<html lang="{html.escape(_language_tag(language))}">',
            "<head>",
            '<meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{title}</title>",
            f"<style>{_STYLE}</style>",
            "</head>",
            "<body>",
            f"<h1>{title}</h1>",
            f'<p class="summary">{html.escape(heading.summary)}</p>',
            _player(narration, 'id="narration"'),
            '<ol id="steps">',
            *items,
            "</ol>",
            "</body>",
            "</html>",
        ]
    )


_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:52rem;margin:2rem auto;padding:0 1rem;color:#222}"
    "ol#steps{padding-left:1.5rem}li.step{margin:0 0 2rem}"
    "li.step img{display:block;max-width:100%;border:1px solid #ccc;border-radius:4px;margin:.5rem 0}"
    ".instruction{font-size:1.15rem;margin:.2rem 0}"
)


def _inline(text: str) -> str:
    """Escaped text with Markdown's **bold** as <strong>."""
    return _BOLD.sub(r"<strong>\1</strong>", html.escape(text))


def _language_tag(language: str) -> str:
    return {"english": "en", "german": "de", "french": "fr", "spanish": "es", "italian": "it"}.get(
        language.lower(), language if len(language) <= 3 else "en"
    )


def _player(audio: Audio, attributes: str) -> str:
    """An inlined ``<audio>`` element; nothing for the mock's audio, which has no file."""
    if audio.uri.startswith(MOCK_AUDIO):
        return ""
    return f'<audio {attributes} controls preload="none" src="{_data_uri(audio.uri, f"audio/{audio.format}")}"></audio>'


def _pcm(audio: Audio) -> Pcm:
    if audio.uri.startswith(MOCK_AUDIO):
        return Pcm(bytes(round(audio.duration_s * MOCK_RATE_HZ) * SAMPLE_BYTES), MOCK_RATE_HZ)
    return wav_to_pcm(load_artifact(audio.uri), "the narration")


def _data_uri(uri: str, mime_type: str) -> str:
    if uri.startswith("data:"):
        return uri
    return f"data:{mime_type};base64,{base64.b64encode(load_artifact(uri)).decode()}"
