"""OCR quality: word accuracy of stepper.ocr against ground truth on public pages, beside the plain
``tesseract`` command (default settings) on the same files.

Pages (bench/pages, sources and licences in its README): tesseract's own test images phototest and eurotext,
and two magazine pages of the UNLV/ISRI collection scanned at 300 dpi, each with its ground-truth text. Real
scans also come tilted and at low resolution, so each UNLV scan is also read as derived here: turned by
4 degrees (as a sheet fed askew) and downsampled to 100 dpi (as a cheap scanner or a fax makes it).

Word accuracy: both texts are normalised (Unicode NFKC; typographic quotes, dashes and guillemets folded to
ASCII) and split at whitespace into words; accuracy is ``1 - errors / truth words``, where errors are the
fewest word substitutions, insertions and deletions that turn the reading into the truth. *Bag* accuracy
(the target) counts them on the words as multisets, ``max(missing, extra)``: the order of columns, captions
and headlines, a layout decision the UNLV truth makes by hand, does not count. *Ordered* accuracy (shown
beside it) is the word-level Levenshtein distance, which does.

Target (local-engines issue): stepper at least the command on every page, and higher on scans.
``python -m bench.ocr_quality --steps`` measures each preprocessing step of stepper_ocr alone.
"""

from __future__ import annotations

import argparse
import base64
import subprocess
import sys
import tempfile
import unicodedata
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from bench.harness import Figure, compare, progress
from stepper.config import current_settings
from stepper.providers.engines.ocr import best_engine
from stepper.providers.media.images import decode_image
from stepper.providers.tesseract import TesseractProvider, read_prepared
from stepper.schemas import OcrRequest
from stepper.settings import OcrSettings, ProviderSettings
from tests.support.redis_server import RedisServer

PAGES = Path(__file__).parent / "pages"
#: (file stem, what it is); its ground truth is ``<stem>.txt`` beside it.
ORIGINALS = (
    ("phototest", "tesseract test image"),
    ("eurotext", "tesseract test image"),
    ("8071_093.3B", "UNLV scan"),
    ("8087_054.3B", "UNLV scan"),
)
SCANS = ("8071_093.3B", "8087_054.3B")
TILT_DEG = 4.0
LOW_DPI = 100
FOLDED = str.maketrans(
    {"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u00ab": '"', "\u00bb": '"'}
    | {"\u2014": "-", "\u2013": "-"}
)


@dataclass(frozen=True)
class Page:
    name: str
    kind: str
    path: Path
    truth: str

    @property
    def is_scan(self) -> bool:
        return "scan" in self.kind


@dataclass(frozen=True)
class Accuracy:
    """Word errors of one reading against its truth, by both measures (see the module's docstring)."""

    truth_words: int
    bag_errors: int
    ordered_errors: int

    @property
    def bag(self) -> float:
        return 1 - self.bag_errors / self.truth_words

    @property
    def ordered(self) -> float:
        return 1 - self.ordered_errors / self.truth_words


def words(text: str) -> list[str]:
    return unicodedata.normalize("NFKC", text).translate(FOLDED).split()


def accuracy(truth: str, read: str) -> Accuracy:
    expected, found = words(truth), words(read)
    wanted, got = Counter(expected), Counter(found)
    bag_errors = max(sum((wanted - got).values()), sum((got - wanted).values()))
    return Accuracy(len(expected), bag_errors, word_distance(expected, found))


def word_distance(first: list[str], second: list[str]) -> int:
    """Levenshtein distance over words: substitutions, insertions and deletions, one each."""
    previous = list(range(len(second) + 1))
    for i, word in enumerate(first, 1):
        current = [i]
        for j, other in enumerate(second, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (word != other)))
        previous = current
    return previous[-1]


@contextmanager
def pages() -> Iterator[list[Page]]:
    """The stored pages, then the derived ones (written to a temporary directory for the command to read)."""
    found = [Page(stem, kind, PAGES / f"{stem}.tif", (PAGES / f"{stem}.txt").read_text()) for stem, kind in ORIGINALS]
    with tempfile.TemporaryDirectory() as directory:
        for stem in SCANS:
            truth = (PAGES / f"{stem}.txt").read_text()
            with Image.open(PAGES / f"{stem}.tif") as scan:
                gray = scan.convert("L")
                dpi = round(scan.info.get("dpi", (300, 300))[0])
            tilted = Path(directory, f"{stem}-tilted.png")
            gray.rotate(TILT_DEG, Image.Resampling.BICUBIC, expand=True, fillcolor=255).save(tilted, dpi=(dpi, dpi))
            low = Path(directory, f"{stem}-{LOW_DPI}dpi.png")
            size = (gray.width * LOW_DPI // dpi, gray.height * LOW_DPI // dpi)
            gray.resize(size, Image.Resampling.LANCZOS).save(low, dpi=(LOW_DPI, LOW_DPI))
            found += [
                Page(f"{stem} tilted {TILT_DEG:g}°", "derived scan", tilted, truth),
                Page(f"{stem} at {LOW_DPI} dpi", "derived scan", low, truth),
            ]
        yield found


def tesseract_command(path: Path) -> str:
    """What ``tesseract <file> stdout`` prints: the command with its default settings (``eng``, psm 3)."""
    command = ["tesseract", str(path), "stdout"]
    done = subprocess.run(command, capture_output=True, text=True, check=True)  # noqa: S603  (no shell)
    return done.stdout


def stepper_ocr(path: Path) -> str:
    """stepper's tesseract provider with this process's settings, as a stepper.ocr task runs it."""
    provider = TesseractProvider(ProviderSettings.model_validate({"name": "tesseract", "class": "x.y:Z"}))
    return "\n".join(page.text for page in provider.read(request_for(path), "tesseract").output.pages)


def request_for(path: Path) -> OcrRequest:
    """A stepper.ocr request for the file with nothing but defaults."""
    return OcrRequest.model_validate({"images": [{"b64": base64.b64encode(path.read_bytes()).decode()}]})


def run(redis: RedisServer | None = None) -> dict[str, dict[str, Any]]:
    """Per page and overall; ``redis`` is not needed (every benchmark is given it)."""
    if best_engine() is None:
        raise SystemExit("tesseract is not installed: run `make system-deps` (or apt-get install tesseract-ocr)")
    results: dict[str, dict[str, Any]] = {}
    totals = {"stepper": [0, 0], "command": [0, 0]}
    with pages() as found:
        for page in found:
            progress(f"ocr quality: {page.name}")
            ours, theirs = (
                accuracy(page.truth, stepper_ocr(page.path)),
                accuracy(page.truth, tesseract_command(page.path)),
            )
            for side, measured in (("stepper", ours), ("command", theirs)):
                totals[side][0] += measured.bag_errors
                totals[side][1] += measured.truth_words
            met = ours.bag > theirs.bag if page.is_scan and ours.bag < 1 else ours.bag >= theirs.bag
            results[f"ocr words {page.name}"] = compare(
                Figure("stepper.ocr", 100 * ours.bag, "% words"),
                Figure("tesseract command", 100 * theirs.bag, "% words"),
                "> the command on a scan, >= on a test image",
                met,
                ordered={"stepper": round(100 * ours.ordered, 1), "command": round(100 * theirs.ordered, 1)},
                truth_words=ours.truth_words,
            )
    ours_all, theirs_all = (1 - errors / count for errors, count in totals.values())
    results["ocr words, all pages"] = compare(
        Figure("stepper.ocr", 100 * ours_all, "% words"),
        Figure("tesseract command", 100 * theirs_all, "% words"),
        "every page's target met",
        all(figures["met"] for figures in results.values()),
    )
    return results


def steps() -> None:
    """Bag (ordered) word accuracy of each page with no step, each step of stepper_ocr alone, and the defaults."""
    engine = best_engine()
    assert engine is not None
    none = OcrSettings(deskew=False, enlarge_glyphs_below_px=0, adaptive_binarisation=False)
    variants = {
        "no step": none,
        "deskew": none.model_copy(update={"deskew": True}),
        "enlarge glyphs": none.model_copy(update={"enlarge_glyphs_below_px": OcrSettings().enlarge_glyphs_below_px}),
        "adaptive binarisation": none.model_copy(update={"adaptive_binarisation": True}),
        "defaults": current_settings().ocr,
    }
    images = current_settings().images
    print(f"{'page':>26}  {'tesseract command':>17}  " + "  ".join(f"{name:>21}" for name in variants))
    with pages() as found:
        for page in found:
            pixels, request = decode_image(page.path.read_bytes(), images), request_for(page.path)
            measured = [accuracy(page.truth, tesseract_command(page.path))]
            measured += [
                accuracy(page.truth, read_prepared(pixels, request, engine, o).text) for o in variants.values()
            ]
            cells = [f"{100 * m.bag:5.1f} ({100 * m.ordered:5.1f})" for m in measured]
            print(f"{page.name:>26}  {cells[0]:>17}  " + "  ".join(f"{cell:>21}" for cell in cells[1:]), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--steps", action="store_true", help="measure each preprocessing step alone")
    options = parser.parse_args(argv)
    if options.steps:
        steps()
        return 0
    from bench.__main__ import line

    for name, figures in run().items():
        ordered = figures.get("ordered")
        print(line(name, figures) + (f"; ordered {ordered['stepper']} vs {ordered['command']}" if ordered else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
