"""The HTTP gateway through real uvicorn, real Redis and real workers (mock mode): every endpoint, auth, limits."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from hashlib import sha1
from pathlib import Path
from typing import Any

import pytest
import requests

from stepper.gateway.auth import key_digest
from stepper.infra import keys, lua
from stepper.samples import sample_requests
from stepper.schemas import Kind
from tests.integration.conftest import GATEWAY_KEY, MOCK_SETTINGS, Fleet
from tests.support.gateway import RunningGateway, running_gateway
from tests.support.monitor import monitored
from tests.support.redis_server import RESERVED_DATABASES, RedisServer, free_port

AUTH = {"Authorization": f"Bearer {GATEWAY_KEY}"}
TASK_PATHS: dict[str, Kind] = {
    "ocr": "ocr",
    "step-detection": "steps",
    "image-analysis": "vision",
    "voice-synthesis": "speech",
    "content-generation": "chat",
}


def post(gateway: RunningGateway, path: str, body: Any, **kwargs: Any) -> requests.Response:
    return requests.post(f"{gateway.url}{path}", json=body, headers=AUTH, timeout=30, **kwargs)


def get(gateway: RunningGateway, path: str, headers: dict[str, str] | None = None) -> requests.Response:
    return requests.get(f"{gateway.url}{path}", headers=AUTH if headers is None else headers, timeout=30)


def finished(gateway: RunningGateway, status_url: str, timeout_s: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        answer = requests.get(status_url, headers=AUTH, timeout=10)
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        if body["state"] in {"SUCCESS", "FAILURE", "REVOKED"}:
            return body
        assert time.monotonic() < deadline, f"task still {body['state']}"
        time.sleep(0.1)


@pytest.mark.parametrize("path", sorted(TASK_PATHS))
def test_each_task_route_runs_its_kind_on_a_worker(gateway: RunningGateway, path: str) -> None:
    kind = TASK_PATHS[path]
    request = {**sample_requests()[kind], "cache": "bypass"}
    answer = post(gateway, f"/api/v1/tasks/{path}", request, params={"priority": "interactive"})
    assert answer.status_code == 202, answer.text
    accepted = answer.json()
    assert accepted["status"] == "queued" and accepted["statusUrl"].endswith(f"/api/v1/tasks/{accepted['jobId']}")
    outcome = finished(gateway, accepted["statusUrl"])
    assert outcome["state"] == "SUCCESS" and outcome["kind"] == kind
    assert outcome["result"]["kind"] == kind and outcome["result"]["provider"] == "mock"
    assert outcome["attempts"][0]["outcome"] == "ok"


def test_a_report_is_queued_then_answered_from_the_cache(gateway: RunningGateway) -> None:
    report = sample_requests()["report"]
    report = {**report, "commit": {**report["commit"], "sha": uuid.uuid4().hex}}  # a request no test sent before
    first = post(gateway, "/v1/reports", report)
    assert first.status_code == 202 and first.json()["status"] == "queued"
    computed = finished(gateway, first.json()["statusUrl"])["result"]

    again = post(gateway, "/v1/reports", report)
    assert again.status_code == 200, again.text
    cached = again.json()
    assert cached["status"] == "cached" and cached["result"] == {**computed, "cached": True}
    status = get(gateway, f"/api/v1/tasks/{cached['jobId']}").json()  # the cached answer's id is known too
    assert status["state"] == "SUCCESS" and status["result"]["output"] == computed["output"]


def test_a_batch_is_checked_whole_then_sent(gateway: RunningGateway) -> None:
    jobs = [
        {"id": "a", "kind": "chat", "args": {"messages": [{"role": "user", "content": "first"}], "cache": "bypass"}},
        {"id": "b", "kind": "vision", "args": sample_requests()["vision"], "priority": 2},
    ]
    answer = post(gateway, "/api/v1/tasks/batch", {"jobs": jobs})
    assert answer.status_code == 202, answer.text
    items = answer.json()["jobs"]
    assert [item["id"] for item in items] == ["a", "b"]
    results = [finished(gateway, item["statusUrl"])["result"] for item in items]
    assert "first" in results[0]["output"]["message"]["content"] and results[1]["kind"] == "vision"

    broken = [*jobs, {"id": "c", "kind": "chat", "args": {"messages": [{"role": "robot", "content": "x"}]}}]
    refused = post(gateway, "/api/v1/tasks/batch", {"jobs": broken})
    assert refused.status_code == 422
    assert "jobs.2.args" in refused.text and "messages.0.role" in refused.text


def test_unknown_task_ids_are_404_and_a_task_can_be_revoked(gateway: RunningGateway) -> None:
    assert get(gateway, f"/api/v1/tasks/{uuid.uuid4()}").status_code == 404
    missing = requests.delete(f"{gateway.url}/api/v1/tasks/{uuid.uuid4()}", headers=AUTH, timeout=10)
    assert missing.status_code == 404

    request = {"messages": [{"role": "user", "content": "never mind"}], "cache": "bypass"}
    accepted = post(gateway, "/api/v1/tasks/content-generation", request).json()
    revoked = requests.delete(accepted["statusUrl"], headers=AUTH, timeout=10)
    assert revoked.status_code == 202 and revoked.json() == {"jobId": accepted["jobId"], "status": "revoked"}
    state = get(gateway, f"/api/v1/tasks/{accepted['jobId']}").json()["state"]
    assert state in {"REVOKED", "SUCCESS"}  # a mock may finish before the revoke arrives; then it stays a success


def test_a_callback_to_a_private_address_is_refused(gateway: RunningGateway) -> None:
    request = {"messages": [{"role": "user", "content": "hi"}], "callback_url": "http://10.0.0.5/hook"}
    answer = post(gateway, "/api/v1/tasks/content-generation", request)
    assert answer.status_code == 422 and "callback" in answer.json()["detail"][0]["msg"]


def test_422_names_the_bad_field(gateway: RunningGateway) -> None:
    answer = post(gateway, "/api/v1/tasks/voice-synthesis", {"text": "hi", "speed": 2})
    assert answer.status_code == 422
    (problem,) = answer.json()["detail"]
    assert problem["loc"] == ["body", "speed"]
    unknown = post(gateway, "/api/v1/tasks/ocr", {"images": [{"b64": "aGk="}], "langauge": "eng"})
    assert unknown.status_code == 422 and ["body", "langauge"] in [p["loc"] for p in unknown.json()["detail"]]


def test_bodies_over_the_limit_are_413_declared_or_chunked(gateway: RunningGateway) -> None:
    big = {"text": "x" * (70 * 1024)}
    assert post(gateway, "/api/v1/tasks/voice-synthesis", big).status_code == 413

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        yield b'{"text": "'
        for _ in range(70):
            yield b"x" * 1024
        yield b'"}'

    chunked = requests.post(
        f"{gateway.url}/api/v1/tasks/voice-synthesis",
        data=chunks(),
        headers={**AUTH, "Content-Type": "application/json"},
        timeout=30,
    )
    assert chunked.status_code == 413


def test_without_a_key_or_with_a_wrong_one_the_answer_is_401(gateway: RunningGateway) -> None:
    assert get(gateway, "/api/v1/queue/status", headers={}).status_code == 401
    wrong = get(gateway, "/api/v1/queue/status", headers={"Authorization": "Bearer stp_not-a-key"})
    assert wrong.status_code == 401 and wrong.headers["WWW-Authenticate"] == "Bearer"
    assert "stp_not-a-key" not in gateway.log()
    assert get(gateway, "/health/ready", headers={}).status_code == 200  # probes need no key


def test_health_queue_status_voices_and_metrics(gateway: RunningGateway, gateway_fleet: Fleet) -> None:
    assert get(gateway, "/health", headers={}).json()["status"] == "ok"
    assert get(gateway, "/health/live", headers={}).status_code == 200
    assert get(gateway, "/health/ready", headers={}).json() == {"ready": True, "problems": []}
    detailed = get(gateway, "/api/v1/health/detailed").json()
    assert detailed["redis_ok"] and gateway_fleet.worker.name in [worker["name"] for worker in detailed["workers"]]
    queues = get(gateway, "/api/v1/queue/status").json()["queues"]
    assert set(queues) >= {"report", "chat", "ocr", "steps", "vision", "speech"}
    assert queues["chat"]["consumers"] == 1 and set(queues["chat"]["by_priority"]) == {str(n) for n in range(10)}
    voices = get(gateway, "/api/v1/voices").json()
    assert set(voices) == {"elevenlabs", "espeak"}  # the speech chain, as the worker sees it
    assert "unavailable" in voices["elevenlabs"]  # no key on the worker

    text = get(gateway, "/metrics").text
    assert 'stepper_gateway_requests_total{method="GET",route="/api/v1/queue/status",status="200"}' in text
    assert 'stepper_queue_depth{priority="0",queue="chat"}' in text  # the fleet's state, as `stepper metrics` has it
    assert get(gateway, "/metrics", headers={}).status_code == 401


def test_without_consumers_ready_is_503_and_a_waiting_task_is_revoked(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    idle = f"redis://127.0.0.1:{redis_server.port}/{RESERVED_DATABASES['gateway-idle']}"  # nobody consumes here
    with running_gateway(idle, tmp_path, MOCK_SETTINGS, "--unauthenticated") as gateway:
        answer = requests.get(f"{gateway.url}/health/ready", timeout=30)
        assert requests.get(f"{gateway.url}/health/live", timeout=30).status_code == 200
        request = {"messages": [{"role": "user", "content": "waiting"}]}
        accepted = requests.post(f"{gateway.url}/api/v1/tasks/content-generation", json=request, timeout=30).json()
        before = requests.get(accepted["statusUrl"], timeout=30).json()["state"]
        assert requests.delete(accepted["statusUrl"], timeout=30).status_code == 202
        after = requests.get(accepted["statusUrl"], timeout=30).json()["state"]
    leftover = redis_server.client()
    leftover.select(RESERVED_DATABASES["gateway-idle"])
    leftover.flushdb()  # the waiting message must not reach a later test's worker
    assert answer.status_code == 503
    assert "queue 'chat' has no consumer" in answer.json()["problems"]
    assert (before, after) == ("PENDING", "REVOKED")


ALLOWED_ORIGIN = "https://app.example"


@pytest.fixture(scope="module")
def limited_gateway(gateway_fleet: Fleet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    """Four keys, each allowed 3 requests and 100 estimated tokens a minute."""
    settings = {**MOCK_SETTINGS, "stepper_gateway": {"rpm": 3, "tpm": 100, "cors_origins": [ALLOWED_ORIGIN]}}
    digests = ",".join(
        key_digest(key) for key in ("stp_requests-key", "stp_tokens-key", "stp_chat-key", "stp_riding-key")
    )
    directory = Path(tmp_path_factory.mktemp("limited"))
    with running_gateway(gateway_fleet.url, directory, settings, env={"STEPPER_GATEWAY_KEY_HASHES": digests}) as gw:
        yield gw


def test_requests_per_minute_per_key_answer_429_with_retry_after(limited_gateway: RunningGateway) -> None:
    headers = {"Authorization": "Bearer stp_requests-key"}
    answers = [get(limited_gateway, "/v1/models", headers=headers) for _ in range(4)]
    assert [answer.status_code for answer in answers] == [200, 200, 200, 429]
    assert int(answers[-1].headers["Retry-After"]) >= 1
    assert answers[-1].json()["error"]["code"] == "rate_limit_exceeded"
    # Another key has its own buckets.
    assert get(limited_gateway, "/v1/models", headers={"Authorization": "Bearer stp_tokens-key"}).status_code == 200


def test_tokens_per_minute_per_key_answer_429(limited_gateway: RunningGateway) -> None:
    headers = {"Authorization": "Bearer stp_tokens-key"}
    long_chat = {"messages": [{"role": "user", "content": "word " * 100}], "cache": "bypass"}  # ~170 tokens
    first = requests.post(
        f"{limited_gateway.url}/api/v1/tasks/content-generation", json=long_chat, headers=headers, timeout=30
    )
    second = requests.post(
        f"{limited_gateway.url}/api/v1/tasks/content-generation", json=long_chat, headers=headers, timeout=30
    )
    assert first.status_code == 202 and second.status_code == 429
    assert int(second.headers["Retry-After"]) >= 1


def test_a_key_s_rate_limit_is_charged_in_the_round_trip_that_publishes_its_task(
    limited_gateway: RunningGateway, gateway_fleet: Fleet
) -> None:
    """A job and a chat each charge their key in their publish's script (``lua/inflight_publish_admit.lua``), not in
    an admission of their own; a cached answer, which publishes nothing, is charged alone. Counted with Redis's
    MONITOR, by script."""
    headers = {"Authorization": "Bearer stp_riding-key"}
    alone = sha1(lua.source("admission", "admit").encode()).hexdigest()
    riding = sha1(lua.source("admission", "inflight_journal", "inflight_publish_admit").encode()).hexdigest()
    cached = {"messages": [{"role": "user", "content": f"riding {uuid.uuid4().hex}"}], "cache": "use"}
    chat = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"riding {uuid.uuid4().hex}"}]}
    jobs = f"{limited_gateway.url}/api/v1/tasks/content-generation"
    with monitored(gateway_fleet.redis) as seen:
        job = requests.post(jobs, json=cached, headers=headers, timeout=30)
        answer = requests.post(f"{limited_gateway.url}/v1/chat/completions", json=chat, headers=headers, timeout=30)
        assert (job.status_code, answer.status_code) == (202, 200), answer.text
        gateway_fleet.app.AsyncResult(job.json()["jobId"]).get(timeout=30)  # the status route would charge the key
        again = requests.post(jobs, json=cached, headers=headers, timeout=30)
        assert (again.status_code, again.json()["status"]) == (200, "cached")
    ours = [command["command"] for command in seen if "{gateway-" in command["command"]]
    scripts = [command.split()[1] for command in ours if command.startswith("EVALSHA ")]
    # An EVALSHA is logged again after a NOSCRIPT (the script's first run on this server).
    assert set(scripts) == {riding, alone}
    assert scripts[-1] == alone and scripts.count(alone) == 1
    assert len([command for command in ours if command.startswith("HSET ") and ":rpm " in command]) == 3


def test_a_chat_over_the_keys_token_limit_is_refused_before_it_is_submitted(
    limited_gateway: RunningGateway, gateway_fleet: Fleet
) -> None:
    """The chat route admits and submits in one step: a refused chat answers OpenAI's 429 and sends nothing."""
    headers = {"Authorization": "Bearer stp_chat-key"}
    markers = [uuid.uuid4().hex, uuid.uuid4().hex]
    answers = [
        requests.post(
            f"{limited_gateway.url}/v1/chat/completions",
            json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"{marker} " + "word " * 100}]},
            headers=headers,
            timeout=30,
        )
        for marker in markers
    ]
    # ~170 estimated tokens each against the key's 100 a minute: the first spends them, the second is refused.
    assert [answer.status_code for answer in answers] == [200, 429], answers[-1].text
    assert answers[1].json()["error"]["code"] == "rate_limit_exceeded"
    assert int(answers[1].headers["Retry-After"]) >= 1
    journaled = gateway_fleet.redis.hvals(keys.inflight_messages())
    assert not any(markers[1].encode() in message for message in journaled)  # never published


def preflight(gateway: RunningGateway, origin: str) -> requests.Response:
    headers = {
        "Origin": origin,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization",
    }
    return requests.options(f"{gateway.url}/v1/chat/completions", headers=headers, timeout=10)


def test_cors_answers_only_the_configured_origins(limited_gateway: RunningGateway, gateway: RunningGateway) -> None:
    allowed = preflight(limited_gateway, ALLOWED_ORIGIN)
    assert allowed.status_code == 200 and allowed.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    assert "access-control-allow-origin" not in preflight(limited_gateway, "https://evil.example").headers
    assert "access-control-allow-origin" not in preflight(gateway, ALLOWED_ORIGIN).headers  # none configured


def test_no_key_reaches_the_gateway_log(gateway: RunningGateway, limited_gateway: RunningGateway) -> None:
    wrong = "stp_a-key-nobody-configured-5e6f"
    assert get(gateway, "/v1/models", headers={"Authorization": f"Bearer {wrong}"}).status_code == 401
    assert get(gateway, "/v1/models").status_code == 200
    for running, given in ((gateway, (GATEWAY_KEY, wrong)), (limited_gateway, ("stp_requests-key", "stp_tokens-key"))):
        log = running.log()
        assert "/v1/models" in log  # the log has the requests...
        assert not [key for key in given if key in log]  # ...and none of the keys offered


def test_redis_down_is_a_503_that_says_so(tmp_path: Path) -> None:
    nowhere = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    chat = {"messages": [{"role": "user", "content": "hi"}]}
    report = sample_requests()["report"]
    # With per-key limits the gateway's own limiter meets the outage first; without, stepper.submit does.
    for name, limits in (("limited", {}), ("unlimited", {"rpm": 0, "tpm": 0})):
        settings = {**MOCK_SETTINGS, "stepper_gateway": limits}
        with running_gateway(nowhere, tmp_path / name, settings, "--unauthenticated") as down:
            path, body = ("/api/v1/tasks/content-generation", chat) if name == "limited" else ("/v1/reports", report)
            answer = requests.post(f"{down.url}{path}", json=body, timeout=30)
            assert answer.status_code == 503, answer.text
            assert "Redis is unreachable" in answer.text


def test_the_gateway_refuses_to_start_without_keys(gateway_fleet: Fleet) -> None:
    env = {k: v for k, v in os.environ.items() if k != "STEPPER_GATEWAY_KEY_HASHES"}
    done = subprocess.run(
        [sys.executable, "-m", "stepper", "gateway", "--port", "1"],
        env={**env, "STEPPER_REDIS_URL": gateway_fleet.url},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2 and "refusing to start the gateway without API keys" in done.stderr


def test_new_key_prints_a_key_and_its_digest() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "stepper", "gateway", "new-key"], capture_output=True, text=True, timeout=60, check=True
    )
    lines = dict(line.split(":", 1) for line in done.stdout.splitlines())
    key, digest = lines["key"].strip(), lines["digest"].strip()
    assert key.startswith("stp_") and key_digest(key) == digest
