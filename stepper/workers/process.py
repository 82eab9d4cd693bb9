"""Per-process set-up of pool processes: heavy objects are made after the fork, not at import."""

from __future__ import annotations

import os
import sys
import time
from typing import Any

from celery.concurrency import get_implementation
from celery.concurrency.prefork import TaskPool as PreforkPool
from celery.signals import (
    after_setup_logger,
    after_setup_task_logger,
    task_postrun,
    task_prerun,
    worker_init,
    worker_process_init,
    worker_process_shutdown,
    worker_shutdown,
)
from prometheus_client import multiprocess

from stepper.errors import ConfigError
from stepper.families import FAMILIES
from stepper.guards.admission import RedisGuardBackend
from stepper.infra import inflight, logs, metrics, result_backend, result_riders, tracing
from stepper.infra.connections import state_redis
from stepper.reuse.cache import output_version
from stepper.schemas import KINDS, Kind
from stepper.tasks.wiring import current_executor
from stepper.workers import pools
from stepper.workers.profiles import consumed_queues
from stepper.workers.result_repr import defer_result_repr

#: The task kinds this worker consumes, found as it starts (a prefork child inherits them).
_consumed: list[Kind] = []


@worker_init.connect
def _prepare_worker(sender: Any = None, **_: Any) -> None:
    """Before the pool starts: one HTTP and one broker connection per concurrent task, so a threads or gevent
    pool never waits for a pooled one nor fails to acknowledge, and a gevent consumer refills its pool promptly
    (:mod:`stepper.workers.pools`); one result-backend client for all the tasks of the process
    (:func:`stepper.infra.result_backend.share_clients`); the text of each result for its task-succeeded event
    made only when the event is sent (:mod:`stepper.workers.result_repr`); and tesseract single-threaded,
    because the pool already keeps every core busy and OpenMP threads in each process would only fight it (an
    operator's own OMP_THREAD_LIMIT wins). Then, unless the pool forks, what the first tasks of the kinds it
    consumes would make (:func:`_warm_up`)."""
    os.environ.setdefault("OMP_THREAD_LIMIT", "1")
    # "auto" is resolved after this signal, and only ever sizes a prefork pool to the cores: no pool to widen.
    concurrency = getattr(sender, "concurrency", None)
    if isinstance(concurrency, int) and concurrency > 0:
        pools.size_for_concurrency(sender.app.conf, concurrency)
    pools.poll_without_fd_limit()
    pools.refill_promptly_when_full()
    result_backend.share_clients()
    _check_guards()
    tracing.setup()
    if sender is not None:
        defer_result_repr(sender.app.conf)
        _consumed[:] = consumed_kinds(sender.app)
        # A prefork parent runs no task, and forks its children again whenever one is replaced: it must not load
        # the engines (numpy and OpenCV start threads of their own as they load). Each child warms up as it
        # starts (worker_process_init).
        if not issubclass(get_implementation(sender.pool_cls), PreforkPool):
            _warm_up()
    if port := os.environ.get("STEPPER_METRICS_PORT"):
        metrics.serve(int(port), metrics.process_registry())


def consumed_kinds(app: Any) -> list[Kind]:
    """The task kinds whose queues ``app``'s worker consumes (``--queues``; every queue without it)."""
    names = set(consumed_queues(app))
    return [kind for kind in KINDS if kind in names]


def _check_guards() -> None:
    """A Redis the guards cannot use stops the worker here, naming the cause (exit status 78, EX_CONFIG):
    running on would fail every call, or let it through unguarded."""
    try:
        RedisGuardBackend(state_redis()).check()
    except ConfigError as exc:
        print(f"stepper: this worker cannot start: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(78) from None


@worker_process_init.connect
def _warm_up(**_: Any) -> None:
    """Make before the first task what the first tasks would otherwise each make at once (a threads or gevent
    pool runs as many first tasks together as it has threads or greenlets): this process's executor (registry,
    guard, Redis clients), the provider classes the chains of the kinds it consumes name (imported on first
    use), each of those families' output version (a digest of its output schema, in every cache key), and the
    tracer. At start-up in a threads, gevent or solo worker (Celery's ``worker_process_init``, which this
    handles, fires only in prefork children), and in each prefork child as it starts.

    Measured on the first 96 chats of a threads x32 worker (a 0.1 s vendor): 3.2 to 3.3 ms of worker CPU
    each, against 3.4 to 3.7 without it; the chats after them take 2.6 to 3.0."""
    executor = current_executor()
    for kind in _consumed:
        executor.resolve_chain(kind)
        output_version(FAMILIES[kind].output_model)
    tracing.setup()


#: When each task running in this process started (``time.monotonic()``), by task id, for its log line.
_started: dict[str, float] = {}


@task_prerun.connect
def _start_clock(task_id: str | None = None, **_: Any) -> None:
    if task_id is not None:
        _started[task_id] = time.monotonic()


@task_postrun.connect
def _log_end(
    task_id: str | None = None, task: Any = None, state: str | None = None, retval: Any = None, **_: Any
) -> None:
    """The task's one log line (:func:`stepper.infra.logs.log_task_end`)."""
    if task_id is None or task is None:
        return
    started = _started.pop(task_id, None)
    if started is not None:
        logs.log_task_end(task.name, task_id, state or "", time.monotonic() - started, retval)


@task_prerun.connect
def _hold_riders(task_id: str | None = None, **_: Any) -> None:
    """A task's cache entries ride with its stored result (stepper.infra.result_riders)..."""
    if task_id is not None:
        result_riders.hold(task_id)


@task_postrun.connect
def _release_riders(task_id: str | None = None, **_: Any) -> None:
    """...and those its result did not take (none was stored) are written once it has run."""
    if task_id is not None:
        result_riders.release(task_id)


@worker_process_shutdown.connect
@worker_shutdown.connect
def _flush_journal(**_: Any) -> None:
    """Finished tasks still held for the in-flight journal's next batch are forgotten before the process ends."""
    inflight.flush_forgotten()


@worker_process_shutdown.connect
def _forget_metrics(pid: int | None = None, **_: Any) -> None:
    """Multiprocess mode keeps a dead child's files; gauges must stop counting it."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(pid or os.getpid())  # type: ignore[no-untyped-call]


@after_setup_logger.connect
@after_setup_task_logger.connect
def _structure_logs(logger: Any = None, loglevel: int | str | None = None, **_: Any) -> None:
    """Secrets redacted from every line; JSON lines when STEPPER_LOG_FORMAT=json; one line per task."""
    if logger is not None:
        logs.install(logger)
    if loglevel is not None:
        logs.one_line_per_task(loglevel)
