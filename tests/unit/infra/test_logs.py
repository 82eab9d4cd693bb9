"""The worker's one line per task: what it says for each way a task ends, and when Celery's own lines stop."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from celery.exceptions import Ignore, Reject, Retry
from redis.exceptions import ConnectionError as RedisConnectionError

from stepper.errors import Cancelled, ChainExhausted
from stepper.infra.logs import CELERY_TASK_LOGGERS, log_task_end, one_line_per_task


def ended(caplog: pytest.LogCaptureFixture, state: str, retval: object) -> str:
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="stepper.tasks"):
        log_task_end("stepper.chat", "t-1", state, 0.0123, retval)
    [record] = caplog.records
    return record.getMessage()


def result(**fields: object) -> dict[str, object]:
    return {"kind": "chat", "provider": "openai", "model": "gpt-x", "cached": False, "output": {}, **fields}


def test_a_result_names_who_answered_and_how_many_attempts_it_took(caplog: pytest.LogCaptureFixture) -> None:
    one = result(output={"message": {"content": "the secret plans"}}, attempts=[{}])
    assert ended(caplog, "SUCCESS", one) == "Task stepper.chat[t-1] succeeded after 0.012s: openai gpt-x, 1 attempt"
    two = ended(caplog, "SUCCESS", result(attempts=[{}, {}]))
    assert two.endswith(": openai gpt-x, 2 attempts")
    hybrid = result(attempts=[{"outcome": "skipped"}, {"outcome": "skipped"}, {"outcome": "ok"}])
    assert ended(caplog, "SUCCESS", hybrid).endswith(": openai gpt-x, 1 attempt")  # nothing tried where skipped
    cached = ended(caplog, "SUCCESS", result(cached=True, attempts=[{}]))
    assert cached.endswith(": openai gpt-x, from the cache")


def test_a_result_that_is_not_a_stepper_result_is_not_shown(caplog: pytest.LogCaptureFixture) -> None:
    assert ended(caplog, "SUCCESS", {"secret": "answer"}) == "Task stepper.chat[t-1] succeeded after 0.012s"
    assert ended(caplog, "SUCCESS", "an answer") == "Task stepper.chat[t-1] succeeded after 0.012s"


def test_a_failure_names_its_exception(caplog: pytest.LogCaptureFixture) -> None:
    line = ended(caplog, "FAILURE", ChainExhausted("every provider failed"))
    assert line == "Task stepper.chat[t-1] failed after 0.012s: ChainExhausted: every provider failed"
    retry = ended(caplog, "RETRY", Retry(exc=ChainExhausted("all busy"), when=5))
    assert retry == (
        "Task stepper.chat[t-1] goes back to the broker after 0.012s: runs again in 5s after ChainExhausted: all busy"
    )
    assert ended(caplog, "RETRY", Retry(when=5)).endswith("goes back to the broker after 0.012s: runs again in 5s")


def test_celery_control_exceptions_show_what_they_were_raised_from(caplog: pytest.LogCaptureFixture) -> None:
    try:
        raise Ignore() from Cancelled("revoked by its producer")
    except Ignore as exc:
        assert ended(caplog, "IGNORED", exc).endswith("ended after 0.012s: Cancelled: revoked by its producer")
    try:
        raise Reject(requeue=True) from RedisConnectionError("Redis is down")
    except Reject as exc:
        assert ended(caplog, "REJECTED", exc).endswith("was rejected after 0.012s: ConnectionError: Redis is down")
    assert ended(caplog, "REVOKED", None) == "Task stepper.chat[t-1] revoked after 0.012s"


def test_nothing_is_formatted_when_info_is_off(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="stepper.tasks"):
        log_task_end("stepper.chat", "t-1", "SUCCESS", 0.1, result(attempts=[]))
    assert caplog.records == []


@pytest.fixture
def celery_levels() -> Iterator[None]:
    before = {name: logging.getLogger(name).level for name in CELERY_TASK_LOGGERS}
    yield
    for name, level in before.items():
        logging.getLogger(name).setLevel(level)


@pytest.mark.parametrize("loglevel", ["INFO", "warning", logging.INFO])
def test_above_debug_celerys_per_task_lines_stop(loglevel: str | int, celery_levels: None) -> None:
    for name in CELERY_TASK_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET)
    one_line_per_task(loglevel)
    assert [logging.getLogger(name).getEffectiveLevel() for name in CELERY_TASK_LOGGERS] == [logging.WARNING] * 2


@pytest.mark.parametrize("loglevel", ["DEBUG", logging.DEBUG])
def test_at_debug_celerys_per_task_lines_stay(loglevel: str | int, celery_levels: None) -> None:
    for name in CELERY_TASK_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET)
    one_line_per_task(loglevel)
    assert [logging.getLogger(name).level for name in CELERY_TASK_LOGGERS] == [logging.NOTSET] * 2
