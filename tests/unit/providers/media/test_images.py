"""Image input: sources, limits and the SSRF guard, against real files and loopback HTTP servers."""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from stepper.errors import InvalidRequest
from stepper.infra.net import blocked_reason, parse_networks
from stepper.providers.media.images import decode_image, inspect_image, load_image
from stepper.schemas import Image
from stepper.settings import ImageSettings
from tests.support.fake_http import FakeServer, Reply, running


def png(width: int = 64, height: int = 32) -> bytes:
    ok, data = cv2.imencode(".png", np.full((height, width, 3), 200, np.uint8))
    assert ok
    return data.tobytes()


PNG = png()


def settings(**overrides: object) -> ImageSettings:
    return ImageSettings.model_validate({"allowed_networks": ["127.0.0.1/32"], **overrides})


@pytest.fixture
def server() -> Iterator[FakeServer]:
    fake = FakeServer()
    fake.route("GET", "/image.png", lambda request: Reply(200, PNG, {"Content-Type": "image/png"}))
    fake.route("GET", "/big.png", lambda request: Reply(200, b"\x89PNG" + b"\0" * 5000, {"Content-Type": "image/png"}))
    fake.route("GET", "/hop", lambda request: Reply(302, b"", {"Location": "/image.png"}))
    fake.route("GET", "/loop", lambda request: Reply(302, b"", {"Location": "/loop"}))
    fake.route("GET", "/to-file", lambda request: Reply(302, b"", {"Location": "file:///etc/passwd"}))
    yield from running(fake)


@pytest.fixture
def internal() -> Iterator[FakeServer]:
    """Another loopback host (127.0.0.2) that the settings do not allow: the 'internal service'."""
    fake = FakeServer(host="127.0.0.2")
    fake.route("GET", "/secret.png", lambda request: Reply(200, PNG))
    yield from running(fake)


def test_inline_image_within_and_over_the_limit() -> None:
    assert load_image(Image(b64=base64.b64encode(PNG).decode()), settings()) == PNG
    with pytest.raises(InvalidRequest, match=f"inline image is {len(PNG):,} bytes; the limit is 100"):
        load_image(Image(b64=base64.b64encode(PNG).decode()), settings(max_bytes=100))


def test_paths_only_under_the_roots(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "ok.png").write_bytes(PNG)
    (tmp_path / "outside.png").write_bytes(PNG)
    os.symlink(tmp_path / "outside.png", root / "escape.png")
    allowed = settings(roots=[str(root)])
    assert load_image(Image(path=str(root / "ok.png")), allowed) == PNG
    with pytest.raises(InvalidRequest, match="outside the allowed roots"):
        load_image(Image(path=str(root / ".." / "outside.png")), allowed)
    with pytest.raises(InvalidRequest, match="outside the allowed roots"):
        load_image(Image(path=str(root / "escape.png")), allowed)
    with pytest.raises(InvalidRequest, match="does not exist"):
        load_image(Image(path=str(root / "missing.png")), allowed)
    with pytest.raises(InvalidRequest, match="no stepper_images"):
        load_image(Image(path=str(root / "ok.png")), settings())


def test_url_from_an_allowed_network(server: FakeServer) -> None:
    assert load_image(Image(url=f"{server.url}/image.png"), settings()) == PNG
    assert load_image(Image(url=f"{server.url}/hop"), settings()) == PNG  # a redirect is followed, and checked


def test_loopback_is_refused_unless_allowed(server: FakeServer) -> None:
    with pytest.raises(InvalidRequest, match="a loopback address"):
        load_image(Image(url=f"{server.url}/image.png"), settings(allowed_networks=[]))
    assert server.requests == []  # refused at connect: not even the request line was sent


def test_redirect_to_an_internal_host_is_refused(server: FakeServer, internal: FakeServer) -> None:
    server.route("GET", "/sneaky", lambda request: Reply(302, b"", {"Location": f"{internal.url}/secret.png"}))
    with pytest.raises(InvalidRequest, match=r"127\.0\.0\.2, a loopback address"):
        load_image(Image(url=f"{server.url}/sneaky"), settings())
    assert internal.requests == []


def test_redirects_are_bounded_and_stay_on_http(server: FakeServer) -> None:
    with pytest.raises(InvalidRequest, match="redirected more than 3 times"):
        load_image(Image(url=f"{server.url}/loop"), settings())
    with pytest.raises(InvalidRequest, match="must be http or https"):
        load_image(Image(url=f"{server.url}/to-file"), settings())


def test_download_stops_at_the_byte_limit(server: FakeServer) -> None:
    with pytest.raises(InvalidRequest, match="the limit is 1,000"):
        load_image(Image(url=f"{server.url}/big.png"), settings(max_bytes=1000))


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "a loopback address"),
        ("10.1.2.3", "a private address"),
        ("192.168.0.1", "a private address"),
        ("169.254.169.254", "a cloud metadata address"),
        ("169.254.1.1", "a link-local address"),
        ("::1", "a loopback address"),
        ("::ffff:127.0.0.1", "a loopback address"),
        ("fd00:ec2::254", "a cloud metadata address"),
        ("0.0.0.0", "an unspecified address"),
        ("240.0.0.1", "a reserved address"),
        ("224.0.0.1", "a multicast address"),
        ("93.184.215.14", None),
        ("2606:4700::1111", None),
    ],
)
def test_blocked_ranges(address: str, reason: str | None) -> None:
    assert blocked_reason(address) == reason


def test_an_allowed_network_opens_only_itself() -> None:
    allowed = parse_networks(["10.0.0.0/8"])
    assert blocked_reason("10.9.9.9", allowed) is None
    assert blocked_reason("192.168.1.1", allowed) == "a private address"


def test_inspect_sizes_from_the_header_and_refuses_bombs() -> None:
    info = inspect_image(png(640, 480), settings())
    assert (info.format, info.width, info.height) == ("PNG", 640, 480)
    with pytest.raises(InvalidRequest, match="640x480 = 307,200 pixels; the limit is 1,000"):
        inspect_image(png(640, 480), settings(max_pixels=1000))
    with pytest.raises(InvalidRequest, match="not an image"):
        inspect_image(b"GIF89a but not really" * 3, settings())
    with pytest.raises(InvalidRequest, match="not an image"):
        inspect_image(os.urandom(256), settings())


def test_truncated_png_is_refused_before_or_at_decoding() -> None:
    with pytest.raises(InvalidRequest):
        decode_image(PNG[: len(PNG) // 2], settings())


def test_decode_gives_pixels() -> None:
    pixels = decode_image(PNG, settings())
    assert pixels.shape == (32, 64, 3)
    assert decode_image(PNG, settings(), grayscale=True).shape == (32, 64)
