"""Make stepper/samples/howto.webm: a small web form screenshotted by headless chromium in four states (at rest,
then its Preview, Save and Send buttons clicked one after the other), each held for a second, encoded by ffmpeg
as VP8 WebM at 10 frames a second. ``make run`` builds its how-to guide from it.

    python scripts/samples/make_howto_recording.py [OUTPUT]   (needs chromium and ffmpeg)
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_OUTPUT = HERE.parents[1] / "stepper" / "samples" / "howto.webm"
WIDTH, HEIGHT = 640, 360
STATES = 4  # at rest, then one more toolbar button pressed in each state
SECONDS_PER_STATE = 1
FPS = 10


def main(output: Path = DEFAULT_OUTPUT) -> None:
    chromium, ffmpeg = (shutil.which(name) for name in ("chromium", "ffmpeg"))
    if chromium is None or ffmpeg is None:
        raise SystemExit("needs chromium and ffmpeg (Debian: apt-get install chromium ffmpeg)")
    with tempfile.TemporaryDirectory() as work:
        shots = Path(work)
        for state in range(STATES):
            page = f"{(HERE / 'howto_form.html').as_uri()}?pressed={state}"
            subprocess.run(  # noqa: S603  (binaries found on PATH, arguments built here)
                [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                 f"--window-size={WIDTH},{HEIGHT}", f"--screenshot={shots / f'state-{state}.png'}", page],
                check=True, capture_output=True, timeout=120,
            )  # fmt: skip
        # The last state once more, so that it is held for its second too (ffmpeg ends at the last image).
        shutil.copy(shots / f"state-{STATES - 1}.png", shots / f"state-{STATES}.png")
        subprocess.run(  # noqa: S603  (as above)
            [ffmpeg, "-v", "error", "-y", "-framerate", f"1/{SECONDS_PER_STATE}", "-i", str(shots / "state-%d.png"),
             "-vf", f"fps={FPS}", "-c:v", "libvpx", "-b:v", "400k", "-pix_fmt", "yuv420p", "-f", "webm", str(output)],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
    print(f"wrote {output} ({output.stat().st_size} bytes)")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_OUTPUT)
