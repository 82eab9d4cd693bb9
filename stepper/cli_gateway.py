"""``stepper gateway``: serve the HTTP gateway, or print a new API key and the digest to configure for it."""

from __future__ import annotations

import argparse
import ipaddress
import sys
from typing import Any

INSTALL_HINT = "the gateway needs FastAPI and uvicorn: pip install 'stepper-fleet[gateway]'"


def add_gateway_parser(commands: Any) -> None:
    """Add ``stepper gateway [--host --port --unauthenticated]`` and ``stepper gateway new-key``."""
    gateway = commands.add_parser("gateway", help="serve the HTTP gateway (jobs, OpenAI-compatible chat, health)")
    gateway.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    gateway.add_argument("--port", type=int, default=8000, help="port to listen on (8000)")
    gateway.add_argument("--unauthenticated", action="store_true", help="serve without API keys (local use only)")
    gateway.set_defaults(run=_serve)
    actions = gateway.add_subparsers(dest="action")
    new_key = actions.add_parser("new-key", help="print a fresh API key and its SHA-256 digest")
    new_key.set_defaults(run=lambda args: _new_key())


def _new_key() -> int:
    from stepper.gateway.auth import new_key

    key, digest = new_key()
    print(f"key:    {key}")
    print(f"digest: {digest}")
    print(
        "Give the key to the caller (it is not stored anywhere); add the digest to STEPPER_GATEWAY_KEY_HASHES "
        "(comma-separated) or stepper_gateway['key_hashes'] in celeryconfig.py.",
        file=sys.stderr,
    )
    return 0


def _serve(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from stepper.gateway.app import create_app
    except ImportError:
        print(f"stepper: {INSTALL_HINT}", file=sys.stderr)
        return 2
    from stepper.config import current_settings

    settings = current_settings()  # a bad digest stops here with a ConfigError naming the setting
    if not settings.gateway.key_hashes and not args.unauthenticated:
        print(
            "stepper: refusing to start the gateway without API keys: set STEPPER_GATEWAY_KEY_HASHES to digests "
            "from `stepper gateway new-key`, or pass --unauthenticated for local use",
            file=sys.stderr,
        )
        return 2
    if args.unauthenticated and not _loopback(args.host):
        print(f"stepper: warning: serving WITHOUT authentication on {args.host}", file=sys.stderr)
    app = create_app(settings, unauthenticated=args.unauthenticated)
    print(f"gateway on http://{args.host}:{args.port} (docs at /docs; Ctrl-C to stop)", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="info", server_header=False)
    return 0


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
