"""What every family task does: validate, run the chain, retry through the broker when that could help.

A task is thin on purpose: no provider logic, no HTTP, no retry loop of its own. It runs inside a scope
(stepper.infra.cancellation) that a revoke cancels and the request's ``deadline_s`` bounds; a cancelled task
ends ``REVOKED`` with ``Cancelled``. A streaming chat's stream ends however the task was answered (by the
chain, the cache, single flight, an idempotency key or a stored result) and however it ended.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import partial
from typing import Any, ClassVar, cast

from celery import states
from celery.exceptions import Ignore, Reject, Retry
from celery.utils.log import get_task_logger
from pydantic import BaseModel
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from stepper.celery import StepperTask
from stepper.config import current_settings
from stepper.errors import Cancelled, ChainExhausted, DeadlineExceeded, InvalidRequest, PoisonMessage
from stepper.families import FAMILIES, Family
from stepper.guards.backoff import full_jitter
from stepper.guards.breaker import AdmissionAhead
from stepper.guards.spend import GATEWAY_KEY_HEADER
from stepper.infra import inflight, metrics, tracing
from stepper.infra.cancellation import TaskScope, task_scope
from stepper.infra.connections import state_redis
from stepper.infra.logs import CORRELATION_HEADER, log_context
from stepper.infra.streams import RedisStreamSink, current_sink
from stepper.outcomes import listeners as outcomes
from stepper.reuse.serving import probes_first, serve
from stepper.schemas import ChatRequest, Kind, TaskResult
from stepper.schemas.common import TaskRequest
from stepper.tasks import history
from stepper.tasks.deliveries import count_redelivery, forget_redeliveries, is_redelivery
from stepper.tasks.wiring import current_executor

logger = get_task_logger(__name__)


class FamilyTask(StepperTask):
    """Base of the six public tasks."""

    kind: ClassVar[Kind]
    # Task kwargs are the JSON contract; a typo must be an InvalidRequest from the worker, not a TypeError
    # from Celery's signature check in the producer.
    typing = False
    # Expected failures: logged as one line, without a traceback.
    throws = (InvalidRequest, ChainExhausted, DeadlineExceeded, PoisonMessage)
    # Celery formats a prefix of each result (celery.utils.saferepr) into the task-succeeded event and, at DEBUG,
    # its "succeeded" log line (stepper.infra.logs): kind, provider, model, cached and the answer's start
    # (TaskResult's field order). Its cost grows with the prefix: 35 µs at 160 against 57 µs at 256.
    resultrepr_maxsize = 160
    # A malformed message is rejected instead of crashing the consumer (which would redeliver it forever).
    Strategy = "stepper.tasks.strategy:guarded"


def run_family(task: FamilyTask, kind: Kind, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    """The body of every family task: validate, serve, then report the final outcome."""
    started = time.monotonic()
    correlation_id = getattr(task.request, CORRELATION_HEADER, None) or task.request.id
    log_context.set({"kind": kind, "correlation_id": str(correlation_id)})
    trace_headers = {
        name: value for name in ("traceparent", "tracestate") if (value := getattr(task.request, name, None))
    }
    with tracing.span("stepper.task", {"stepper.kind": kind, "celery.task_id": task.request.id}, trace_headers):
        return _run_family(task, kind, args, kwargs, started)


def _run_family(
    task: FamilyTask, kind: Kind, args: tuple[Any, ...], kwargs: dict[str, Any], started: float
) -> dict[str, Any]:
    try:
        if args:
            raise InvalidRequest(f"stepper.{kind} takes keyword arguments only; got {len(args)} positional argument(s)")
        request = cast(TaskRequest, FAMILIES[kind].parse(kwargs))
    except InvalidRequest as exc:
        metrics.record_task(kind, "invalid", time.monotonic() - started)
        outcomes.failed(task.request.id, kind, kwargs, exc, task.request.retries)
        _finished(task)
        raise
    redelivery = is_redelivery(task.request)
    family = FAMILIES[kind]
    executor = current_executor()
    # The chain's first admission rides with the cache probe when that misses (one round trip fewer); without a
    # probe it is sent now, and Redis answers while the task gets ready to call.
    ahead = executor.ahead(family, request)
    if ahead is not None and not redelivery and not probes_first(family, request):
        ahead.ask_now()
    try:
        with (
            task_scope(task.request.id, _deadline_at(task, request), task.app.state_client()) as scope,
            _stream_for(task, request) as sink,
        ):
            result = _answer(task, family, request, scope, redelivery=redelivery, ahead=ahead)
            if sink is not None:  # computed, cached, waited for or stored: the stream ends with the answer
                sink.done(result)
    except Retry:
        # The retry is a message of its own, journaled under the same task id when it was published: the entry
        # stays, now describing it.
        metrics.record_task(kind, "retry", time.monotonic() - started)
        raise
    except (RedisConnectionError, RedisTimeoutError) as exc:
        # Redis stayed down longer than stepper_recovery.redis_wait_s. Failing would lose the task: put it back
        # instead. If Redis cannot even take it back, the message stays in kombu's unacked hash, and the
        # fleet's recovery sweep restores it once Redis answers again (stepper.workers.recovery).
        metrics.record_task(kind, "requeued", time.monotonic() - started)
        logger.warning("Redis is unreachable (%s): stepper.%s %s goes back on its queue", exc, kind, task.request.id)
        raise Reject(exc, requeue=True) from exc
    except Cancelled as exc:
        # Revoked while it ran: REVOKED, as Celery records a revoke, with the attempts; the message is acked.
        metrics.record_task(kind, "cancelled", time.monotonic() - started)
        task.backend.store_result(task.request.id, exc, states.REVOKED, request=task.request)
        outcomes.failed(task.request.id, kind, request, exc, task.request.retries)
        _finished(task)
        raise Ignore() from exc
    except Exception as exc:
        metrics.record_task(kind, "failure", time.monotonic() - started)
        outcomes.failed(task.request.id, kind, request, exc, task.request.retries)
        _finished(task)
        raise
    finally:
        if ahead is not None:
            executor.release(ahead)
        if redelivery:
            _forget_redeliveries(task.request.id)
    metrics.record_task(kind, "cached" if result.get("cached") else "success", time.monotonic() - started)
    outcomes.succeeded(task.request.id, kind, request, result)
    _finished(task)
    return result


def _answer(
    task: FamilyTask,
    family: Family,
    request: TaskRequest,
    scope: TaskScope,
    *,
    redelivery: bool,
    ahead: AdmissionAhead | None,
) -> dict[str, Any]:
    """A redelivered task's stored result, else the request served: from the cache, by single flight, or by the
    chain."""
    result = _stored_result(task) if redelivery else None
    if result is None:
        if redelivery:
            count_redelivery(task.request.id, family.kind)
        compute = partial(_compute, task, family, request, scope, ahead)
        result = serve(family, request, task.request.id, compute, admitting=ahead)
    return result


def _finished(task: FamilyTask) -> None:
    """The task's message is done with: out of the in-flight journal with the next batch (stepper.infra.inflight;
    Redis brokers only, RabbitMQ confirms publishes instead)."""
    if task.app.broker_kind == "redis":
        inflight.forget_soon(task.app.state_client(), task.request.id)


def _forget_redeliveries(task_id: str) -> None:
    try:
        forget_redeliveries(task_id)
    except (RedisConnectionError, RedisTimeoutError) as exc:  # the count runs out with the result expiry
        logger.warning("could not forget the redeliveries of %s (%s)", task_id, exc)


def _stored_result(task: FamilyTask) -> dict[str, Any] | None:
    """A message redelivered after its worker died may already have a stored result: return it, don't redo it."""
    stored = task.AsyncResult(task.request.id)
    return stored.result if stored.state == "SUCCESS" and isinstance(stored.result, dict) else None


@contextmanager
def _stream_for(task: FamilyTask, request: TaskRequest) -> Iterator[RedisStreamSink | None]:
    """The task's event stream when its request asked to stream, as the sink providers write deltas to
    (``current_sink``). If the block raises, the stream ends with ``cancelled`` or ``error``, or says
    ``reset`` when the task goes back to the broker (its next run streams again)."""
    if not (isinstance(request, ChatRequest) and request.stream):
        yield None
        return
    sink = RedisStreamSink(state_redis(), task.request.id)
    token = current_sink.set(sink)
    try:
        yield sink
    except Retry:
        sink.reset("every provider failed for now; the task will run again")
        raise
    except Cancelled as exc:
        sink.cancelled(str(exc))
        raise
    except Exception as exc:
        sink.error(f"{type(exc).__name__}: {exc}")
        raise
    finally:
        current_sink.reset(token)


def _deadline_at(task: FamilyTask, request: TaskRequest) -> float | None:
    """The request's deadline on this process's monotonic clock: the message's ``expires``, which the
    producer set to submission + ``deadline_s`` (StepperCelery.send_task), else ``deadline_s`` from now."""
    if request.deadline_s is None:
        return None
    expires = task.request.expires
    if expires is None:
        return time.monotonic() + request.deadline_s
    when = expires if isinstance(expires, datetime) else datetime.fromisoformat(str(expires))
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return time.monotonic() + (when - datetime.now(UTC)).total_seconds()


def _compute(
    task: FamilyTask, family: Family, request: TaskRequest, scope: TaskScope, ahead: AdmissionAhead | None
) -> dict[str, Any]:
    result = _run_chain(task, family, request, scope, ahead).model_dump(mode="json")
    result["attempts"] = history.whole(task.app.state_client(), task.request.id, _run_number(task), result["attempts"])
    return result


def _run_number(task: FamilyTask) -> int:
    return int(task.request.retries or 0) + 1


def _run_chain(
    task: FamilyTask, family: Family, request: BaseModel, scope: TaskScope, ahead: AdmissionAhead | None
) -> TaskResult:
    """The chain's answer; its failure goes back to the broker when a later run could succeed in time, and
    carries the attempts of every run when it is final."""
    client = task.app.state_client()
    try:
        gateway_key = getattr(task.request, GATEWAY_KEY_HEADER, None)
        key = gateway_key if isinstance(gateway_key, str) else None
        return current_executor().run(family, request, scope, key, ahead)
    except ChainExhausted as exc:
        retry = current_settings().retry
        if exc.retryable and task.request.retries < retry.task_max_retries:
            countdown = broker_countdown(exc, task.request.retries)
            remaining_s = scope.remaining_s()
            if remaining_s is None or countdown < remaining_s:
                expiry_s = float(task.app.conf.result_expires or 86400)
                history.keep(client, task.request.id, history.numbered(exc.attempts, _run_number(task)), expiry_s)
                raise task.retry(exc=exc, countdown=countdown, max_retries=retry.task_max_retries) from None
            attempts = history.whole(client, task.request.id, _run_number(task), exc.attempts)
            raise DeadlineExceeded(
                f"{exc}; the next try would start {countdown:.1f}s from now, after the request's deadline_s",
                attempts,
            ) from None
        exc.args = (exc.args[0], history.whole(client, task.request.id, _run_number(task), exc.attempts), *exc.args[2:])
        raise
    except (Cancelled, DeadlineExceeded) as exc:
        exc.args = (exc.args[0], history.whole(client, task.request.id, _run_number(task), exc.attempts))
        raise


def broker_countdown(exc: ChainExhausted, retries: int) -> float:
    """Seconds before the task runs again: the shortest Retry-After, or a jittered backoff; capped."""
    retry = current_settings().retry
    if exc.retry_after_s is not None:
        wait = exc.retry_after_s
    else:
        wait = retry.backoff_base_s + full_jitter(
            retries + 1, max(1.0, retry.backoff_base_s), retry.task_countdown_cap_s
        )
    return min(wait, retry.task_countdown_cap_s)
