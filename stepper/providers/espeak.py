"""Speech with espeak-ng: robotic but local, free and always there, so it is the speech chain's last resort.

The text goes in on stdin (``--stdin``), never on the command line, so text starting with ``-`` is spoken and
not parsed as an option. The WAV is written to a temporary file (``-w``): with ``--stdout`` espeak-ng cannot
seek back, and its header then claims a size of about 2 GB. Voices are checked against ``espeak-ng --voices``
first, because an unknown name fails late and a variant name alone (``adam``) crashes espeak-ng 1.51.
Long text is spoken in pieces of whole sentences (:data:`MAX_BYTES_PER_CALL`), joined into one track and
encoded as WAV, MP3 or Ogg Vorbis. Options: ``default_voice`` (``en`` unless set).
"""

from __future__ import annotations

import difflib
import re
import shutil
import signal
import subprocess
import tempfile
import time
from functools import cache
from pathlib import Path
from typing import Any, ClassVar

from stepper.contracts import Provider, Reply
from stepper.errors import Timeout, Unavailable, UnprocessableInput, UnsupportedInput
from stepper.providers.media.audio import Pcm, join_pcm, store_pcm, wav_to_pcm
from stepper.providers.media.sentences import split_for_engine
from stepper.schemas import Kind, SpeechOutput, SpeechRequest
from stepper.settings import ProviderSettings

BINARY = "espeak-ng"
DEFAULT_VOICE = "en"
#: Suggested when an unknown voice resembles none of the installed ones.
COMMON_VOICES = ("en", "en-US", "fr", "de", "es", "it", "pt", "cmn")
#: ``(en-gb 3)`` in the last column of ``--voices``: another language code this voice answers to.
_OTHER_LANGUAGE = re.compile(r"\(([^\s()]+) \d+\)")
#: espeak-ng reads any length on stdin (20 000 characters in about 2 s here), but translates one clause at a
#: time in a buffer of 800 UTF-8 bytes (``N_TR_SOURCE`` in its translate.h) and breaks a longer clause wherever
#: the buffer fills. Pieces of at most 800 bytes reach it with every clause whole; 25 calls of 800 bytes cost
#: about what one call of 20 000 does.
MAX_BYTES_PER_CALL = 800


class EspeakProvider(Provider):
    kinds: ClassVar[frozenset[Kind]] = frozenset({"speech"})

    @classmethod
    def unavailable_reason(cls, settings: ProviderSettings) -> str | None:
        if shutil.which(BINARY) is None:
            return "espeak-ng is not installed (Debian: apt-get install espeak-ng)"
        return super().unavailable_reason(settings)

    @classmethod
    def details(cls, settings: ProviderSettings) -> dict[str, Any]:
        """``{"voices": count}``: how many voices ``espeak-ng --voices`` lists (``stepper voices`` names them)."""
        return {"voices": len(installed_voices())}

    def synthesise(self, request: SpeechRequest, model: str) -> Reply[SpeechOutput]:
        voice = request.voice or str(self.settings.options.get("default_voice", DEFAULT_VOICE))
        check_voice(voice)
        arguments = [BINARY, "--stdin", "-b", "1", "-v", voice]  # -b 1: the text is UTF-8, whatever the locale
        if request.speed is not None:
            arguments += ["-s", str(request.speed)]
        if request.pitch is not None:
            arguments += ["-p", str(request.pitch)]
        pieces = split_for_engine(request.text, MAX_BYTES_PER_CALL, utf8_length) or [request.text]
        deadline = time.monotonic() + self.settings.total_timeout_s
        with tempfile.TemporaryDirectory(prefix="stepper-espeak-") as directory:
            path = Path(directory) / "speech.wav"
            pcm = join_pcm([self._speak(piece, arguments, path, deadline) for piece in pieces])
        output = SpeechOutput(audio=store_pcm(pcm, request.format, BINARY), voice=voice)
        return Reply(output, {"characters": len(request.text)})

    def _speak(self, text: str, arguments: list[str], path: Path, deadline: float) -> Pcm:
        """One call of espeak-ng on ``text`` (at most MAX_BYTES_PER_CALL bytes), its WAV written to ``path``.

        Raises Timeout past ``deadline`` (time.monotonic() seconds, shared by all the pieces of a request),
        UnprocessableInput when espeak-ng crashes on the text, Unavailable when it fails otherwise.
        """
        remaining_s = deadline - time.monotonic()
        try:
            if remaining_s <= 0:
                raise subprocess.TimeoutExpired(arguments, 0)
            done = subprocess.run(  # noqa: S603  (a fixed binary, no shell, the text on stdin)
                [*arguments, "-w", str(path)],
                input=text.encode("utf-8"),
                capture_output=True,
                timeout=remaining_s,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise Timeout(f"espeak-ng took longer than {self.settings.total_timeout_s:g}s") from None
        if done.returncode < 0:
            # Killed by a signal (a segfault on this text): the next request is served as before.
            crash = signal.Signals(-done.returncode).name
            raise UnprocessableInput(f"espeak-ng crashed ({crash}) on this text; it cannot be spoken by espeak-ng")
        if done.returncode != 0:
            problem = done.stderr.decode("utf-8", "replace").strip()[:300] or "no message"
            raise Unavailable(f"espeak-ng failed (exit {done.returncode}): {problem}")
        return wav_to_pcm(path.read_bytes() if path.exists() else b"", BINARY)

    def voices(self) -> list[dict[str, str | None]]:
        """Every installed voice: ``id`` (what ``voice`` accepts), ``name`` and ``language``."""
        return [dict(voice) for voice, _ in installed_voices()]


@cache
def installed_voices() -> tuple[tuple[dict[str, str], frozenset[str]], ...]:
    """``espeak-ng --voices`` parsed once per process (voices do not change while it runs): each voice, and
    every spelling ``-v`` accepts for it, lowercased: file name, language, name and the other languages."""
    try:
        listing = subprocess.run(  # noqa: S603  (a fixed binary and arguments)
            [BINARY, "--voices"], capture_output=True, text=True, timeout=30, check=True
        ).stdout
    except (subprocess.SubprocessError, OSError) as exc:
        raise Unavailable(f"espeak-ng --voices failed ({type(exc).__name__}); is espeak-ng-data installed?") from None
    voices = []
    for line in listing.splitlines()[1:]:  # the first line is the column header
        fields = line.split()
        if len(fields) >= 5:  # Pty Language Age/Gender VoiceName File [Other Languages]
            language, name, file = fields[1], fields[3].replace("_", " "), fields[4]
            voice = {"id": file.rsplit("/", 1)[-1], "name": name, "language": language}
            aliases = {voice["id"], language, name, *_OTHER_LANGUAGE.findall(" ".join(fields[5:]))}
            voices.append((voice, frozenset(alias.lower() for alias in aliases)))
    return tuple(voices)


def utf8_length(text: str) -> int:
    """Bytes of ``text`` in UTF-8: espeak-ng's buffers count bytes, not characters."""
    return len(text.encode("utf-8"))


def check_voice(voice: str) -> None:
    """Refuse a voice espeak-ng does not have, suggesting close ones; ``voice+variant`` checks the voice part."""
    base = voice.split("+", 1)[0].lower()
    if not any(base in aliases for _, aliases in installed_voices()):
        ids = sorted(v["id"] for v, _ in installed_voices())
        common = [known for known in COMMON_VOICES if known in ids]
        suggestions = difflib.get_close_matches(base, ids, n=5) or common or ids[:5]
        raise UnsupportedInput(
            f"espeak-ng has no voice {voice!r}; try {', '.join(suggestions)} "
            f"(of {len(ids)} installed: espeak-ng --voices)"
        )
