"""What an engine's own failure on one input means: that input cannot be processed here, not that the
provider is unhealthy. The breaker measures the provider, so such failures must never reach it as one."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from stepper.errors import StepperError, UnprocessableInput

#: Characters of the engine's own message quoted in the error.
DETAIL_CHARS = 200


@contextmanager
def input_specific(engine: str) -> Iterator[None]:
    """Turn an exception raised inside ``engine`` (OpenCV's ``cv2.error``, tesserocr's ``RuntimeError``...)
    into UnprocessableInput naming the engine; stepper's own errors pass unchanged."""
    try:
        yield
    except (StepperError, OSError):
        raise  # stepper's own verdict, or the machine's (a full disk), not the input's
    except Exception as exc:
        detail = str(exc).strip().splitlines()[0][:DETAIL_CHARS] if str(exc).strip() else "no message"
        raise UnprocessableInput(f"{engine} failed on this input ({type(exc).__name__}: {detail})") from exc
