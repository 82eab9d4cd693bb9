"""A throwaway certificate for loopback HTTPS servers: vendors are called over TLS in production, and a test of
what TLS changes (handshakes, the CA bundle a worker trusts) needs a server that speaks it."""

from __future__ import annotations

import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.support.binaries import require_binary


@dataclass(frozen=True)
class Certificate:
    #: PEM. Self-signed, so this file is also the CA bundle that trusts it (``REQUESTS_CA_BUNDLE``).
    cert_path: Path
    key_path: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert_path, self.key_path)
        return context


def self_signed(directory: Path, host: str = "127.0.0.1") -> Certificate:
    """A certificate for ``host`` (an IP address), valid for a day, made by the ``openssl`` command line
    (Debian's ``openssl``; without it the test skips, or fails under CI)."""
    openssl = require_binary("openssl", "openssl")
    cert, key = directory / "vendor.pem", directory / "vendor.key"
    key_options = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"]
    names = ["-subj", f"/CN={host}", "-addext", f"subjectAltName=IP:{host}"]
    files = ["-keyout", str(key), "-out", str(cert)]
    subprocess.run([openssl, "req", "-x509", *key_options, *names, *files], check=True, capture_output=True)
    return Certificate(cert, key)
