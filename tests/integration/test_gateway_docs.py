"""The gateway's /docs page renders in a real headless browser with no internet: Swagger UI comes from the
installed package, never from a CDN."""

from __future__ import annotations

import subprocess

import requests

from tests.support.binaries import require_binary
from tests.support.gateway import RunningGateway


def test_docs_render_from_local_assets_in_headless_chromium(gateway: RunningGateway) -> None:
    page = requests.get(f"{gateway.url}/docs", timeout=30)
    assert page.ok
    assert "cdn." not in page.text and "/static-offline-docs/swagger-ui-bundle.js" in page.text
    assert requests.get(f"{gateway.url}/static-offline-docs/swagger-ui-bundle.js", timeout=30).ok

    chromium = require_binary("chromium", "chromium")
    # Every host but the gateway's loopback address unreachable, as on an air-gapped machine.
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"]
    dom = subprocess.run(
        [chromium, *flags, "--virtual-time-budget=15000", "--dump-dom", f"{gateway.url}/docs"],
        capture_output=True, text=True, check=True, timeout=120,
    ).stdout  # fmt: skip
    assert 'class="swagger-ui' in dom  # Swagger UI ran and drew the page
    assert "/api/v1/workflows/howto" in dom and "/v1/chat/completions" in dom  # from the gateway's OpenAPI
