"""OCR throughput: stepper.ocr tasks on a prefork worker against a plain pytesseract loop, same images.

Target (local-engines issue): at least 2.0x the plain loop's images per second.
"""

from __future__ import annotations

import base64
import os
from typing import Any

import cv2
import numpy as np
import pytesseract

from bench.harness import Figure, compare, fleet, progress, timed
from tests.support.redis_server import RedisServer

IMAGES = 48
TARGET = 2.0
WORDS = ["stepper", "worker", "fleet", "invoice", "total", "settings", "saved", "report", "queue", "priority"]


def screenshots(count: int) -> list[bytes]:
    """Small UI-like screenshots with a few lines of text each, all different."""
    images = []
    for index in range(count):
        canvas = np.full((240, 480, 3), 250, np.uint8)
        for line in range(4):
            text = " ".join(WORDS[(index + line + k) % len(WORDS)] for k in range(3)) + f" {index}"
            cv2.putText(canvas, text, (16, 50 + 50 * line), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (20, 20, 20), 2, cv2.LINE_AA)
        ok, png = cv2.imencode(".png", canvas)
        assert ok
        images.append(png.tobytes())
    return images


def run(redis: RedisServer) -> dict[str, dict[str, Any]]:
    images = screenshots(IMAGES)
    cores = os.cpu_count() or 1
    progress(f"ocr: plain pytesseract loop over {IMAGES} images")
    decoded = [cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) for data in images]
    baseline = timed("pytesseract loop", IMAGES, lambda: [pytesseract.image_to_string(pixels) for pixels in decoded])
    settings = {"stepper_chains": {"ocr": ["tesseract:tesseract"]}}
    progress(f"ocr: stepper.ocr tasks on a prefork worker, concurrency {cores}")
    with fleet(redis, 1, settings, name="bench-ocr", pool="prefork", concurrency=cores, queues=["ocr"]) as (app, _):
        requests = [{"images": [{"b64": base64.b64encode(data).decode()}]} for data in images]
        app.send_task("stepper.ocr", kwargs=requests[0]).get(timeout=60)  # warm both pool processes' engines
        app.send_task("stepper.ocr", kwargs=requests[1]).get(timeout=60)

        def submit_and_wait() -> None:
            pending = [app.send_task("stepper.ocr", kwargs=request) for request in requests]
            for result in pending:
                result.get(timeout=120)

        tasks = timed("stepper.ocr tasks", IMAGES, submit_and_wait)
    ratio = tasks.per_second / baseline.per_second
    return {
        "ocr": compare(
            Figure(f"{tasks.name} (prefork x{cores})", tasks.per_second, "images/s"),
            Figure(baseline.name, baseline.per_second, "images/s"),
            f">= {TARGET}x",
            ratio >= TARGET,
        )
    }
