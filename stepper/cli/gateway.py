"""``stepper gateway``: serve the HTTP gateway, or print a new API key and the digest to configure for it."""

from __future__ import annotations

import ipaddress

import click

from stepper.cli.common import fail

INSTALL_HINT = "the gateway needs FastAPI and uvicorn: pip install 'stepper-fleet[gateway]'"


@click.group("gateway", invoke_without_command=True)
@click.option("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
@click.option("--port", type=int, default=8000, help="port to listen on (8000)")
@click.option("--unauthenticated", is_flag=True, help="serve without API keys (local use only)")
@click.pass_context
def gateway_group(ctx: click.Context, host: str, port: int, unauthenticated: bool) -> int | None:
    """serve the HTTP gateway (jobs, OpenAI-compatible chat, health)"""
    if ctx.invoked_subcommand is not None:  # `stepper gateway new-key`: that command answers, nothing is served
        return None
    try:
        import uvicorn

        from stepper.gateway.app import create_app
    except ImportError:
        return fail(INSTALL_HINT)
    from stepper.config import current_settings

    settings = current_settings()  # a bad digest stops here with a ConfigError naming the setting
    if not settings.gateway.key_hashes and not unauthenticated:
        return fail(
            "refusing to start the gateway without API keys: set STEPPER_GATEWAY_KEY_HASHES to digests "
            "from `stepper gateway new-key`, or pass --unauthenticated for local use"
        )
    if unauthenticated and not _loopback(host):
        click.echo(f"stepper: warning: serving WITHOUT authentication on {host}", err=True)
    app = create_app(settings, unauthenticated=unauthenticated)
    click.echo(f"gateway on http://{host}:{port} (docs at /docs; Ctrl-C to stop)")
    uvicorn.run(app, host=host, port=port, log_level="info", server_header=False)
    return 0


@gateway_group.command("new-key")
def new_key_command() -> int:
    """print a fresh API key and its SHA-256 digest"""
    from stepper.gateway.auth import new_key

    key, digest = new_key()
    click.echo(f"key:    {key}")
    click.echo(f"digest: {digest}")
    click.echo(f"identity: {digest[:8]}  (how logs, metrics and stepper_gateway['budgets'] name this key)")
    click.echo(
        "Give the key to the caller (it is not stored anywhere); add the digest to STEPPER_GATEWAY_KEY_HASHES "
        "(comma-separated) or stepper_gateway['key_hashes'] in celeryconfig.py.",
        err=True,
    )
    return 0


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
