"""Vendor calls on urllib3: what ``requests`` gave providers is kept, and its surprises are not."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stepper.errors import UnsupportedInput
from stepper.providers.http import HttpClient
from stepper.providers.transport import lines_of
from stepper.settings import ProviderSettings
from tests.support.fake_http import FakeServer, Reply, running

KEY = "sk-transport-0123456789abcdef"


@pytest.fixture
def server() -> Iterator[FakeServer]:
    fake = FakeServer()
    fake.route("POST", "/echo", lambda request: Reply(200, {"auth": request.headers.get("authorization")}))
    fake.route("POST", "/moved", lambda request: Reply(301, b"", {"Location": "https://api.example.com/v1/echo"}))
    packed = gzip.compress(json.dumps({"packed": True}).encode())
    fake.route("POST", "/gzip", lambda request: Reply(200, packed, {"Content-Encoding": "gzip"}))
    yield from running(fake)


def client(server: FakeServer) -> HttpClient:
    settings = ProviderSettings.model_validate({"name": "acme", "class": "x.y:Z", "connect_timeout_s": 1.0})
    return HttpClient(settings, server.url, KEY)


def test_a_redirect_is_not_followed_and_says_what_to_change(server: FakeServer) -> None:
    """A session would have followed it, turning the POST into a GET; a vendor's base_url is simply wrong."""
    with pytest.raises(
        UnsupportedInput, match=r"answered 301, redirecting to https://api\.example\.com/v1/echo.*base_url"
    ):
        client(server).post_json("/moved", {"a": 1}, {})
    assert [request.path for request in server.requests] == ["/moved"]


def test_a_gzipped_answer_is_decoded(server: FakeServer) -> None:
    assert client(server).post_json("/gzip", {}, {}) == {"packed": True}
    assert "gzip" in server.requests[0].headers["accept-encoding"]


def test_netrc_credentials_apply_only_to_calls_without_their_own_key(
    server: FakeServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login gateway-user password gateway-pass\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    acme = client(server)
    assert acme.post_json("/echo", {}, {"Authorization": f"Bearer {KEY}"}) == {"auth": f"Bearer {KEY}"}
    assert acme.post_json("/echo", {}, {}) == {"auth": "Basic Z2F0ZXdheS11c2VyOmdhdGV3YXktcGFzcw=="}


@given(
    lines=st.lists(
        st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")),
        min_size=1,
        max_size=8,
    ),
    ending=st.sampled_from(["\n", "\r\n", "\r"]),
    cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=6),
)
def test_lines_are_the_same_however_the_body_is_cut_into_chunks(lines: list[str], ending: str, cuts: list[int]) -> None:
    body = "".join(line + ending for line in lines).encode()
    points = sorted({0, len(body), *(cut for cut in cuts if cut < len(body))})
    chunks = [body[start:end] for start, end in pairwise(points)]
    assert list(lines_of(chunks)) == lines


def test_a_crlf_split_between_two_chunks_is_one_line_ending() -> None:
    assert list(lines_of([b"data: a\r", b"\n\r", b"\n"])) == ["data: a", ""]
