"""Job routes: submit a task of any kind, a batch of them, read a task's outcome, revoke it.

Every body is the kind's own pydantic request model (the OpenAPI schema is the task contract itself), and work
goes through :func:`stepper.producer.submit`, so validation, callback_url checks, idempotency and the
producer-side cache behave exactly as for a Python producer. Task ids this gateway issued are remembered in
Redis for as long as results are kept: any other id is a 404, so the gateway is no oracle for other tasks.
"""

from __future__ import annotations

import json
from contextlib import nullcontext
from typing import Annotated, Any, Literal, cast

from celery.result import AsyncResult, EagerResult
from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from stepper.batch import Job
from stepper.errors import ChainExhausted, InvalidRequest
from stepper.families import FAMILIES
from stepper.gateway.auth import Caller
from stepper.gateway.errors import ApiError
from stepper.gateway.state import Gateway, admit, admitting, caller, gateway, limited, submitted_by
from stepper.infra import keys
from stepper.outcomes.webhooks import check_callback_url
from stepper.priorities import priority_from_text
from stepper.producer import submit
from stepper.schemas import (
    Attempt,
    Kind,
    OcrRequest,
    ReportRequest,
    SpeechRequest,
    StepsRequest,
    VisionRequest,
)
from stepper.schemas.chat import ChatRequest
from stepper.schemas.common import TaskRequest

#: Path segment under /api/v1/tasks -> task kind and request model.
TASK_PATHS: dict[str, tuple[Kind, type[BaseModel]]] = {
    "ocr": ("ocr", OcrRequest),
    "step-detection": ("steps", StepsRequest),
    "image-analysis": ("vision", VisionRequest),
    "voice-synthesis": ("speech", SpeechRequest),
    "content-generation": ("chat", ChatRequest),
}
MAX_BATCH_JOBS = 1000

Priority = Annotated[
    str,
    Query(
        pattern=r"^(interactive|normal|batch|[0-9])$",
        description="interactive, normal, batch, or 0 (most urgent) to 9",
    ),
]


class JobAccepted(BaseModel):
    """``queued``: poll ``statusUrl``. ``cached``: a fresh cached answer, in ``result``, and nothing was enqueued."""

    status: Literal["cached", "queued"]
    jobId: str  # camelCase: the HTTP contract's spelling
    statusUrl: str
    result: dict[str, Any] | None = None


class TaskError(BaseModel):
    type: str
    message: str


class TaskStatus(BaseModel):
    jobId: str
    kind: Kind
    state: str = Field(
        description="PENDING (queued or unknown to the workers yet), STARTED, RETRY, SUCCESS, FAILURE, REVOKED"
    )
    result: dict[str, Any] | None = None
    error: TaskError | None = None
    attempts: list[Attempt] = Field(default_factory=list)


class BatchRequest(BaseModel):
    """Jobs as ``stepper batch`` reads them: ``{id, kind, args, priority?}``; all are checked before any is sent."""

    model_config = ConfigDict(extra="forbid")

    jobs: list[Job] = Field(min_length=1, max_length=MAX_BATCH_JOBS)


class BatchItem(JobAccepted):
    id: str


class BatchAccepted(BaseModel):
    jobs: list[BatchItem]


router = APIRouter(tags=["jobs"])


def _add_job_route(path: str, kind: Kind, model: type[BaseModel]) -> None:
    async def create(
        *,
        request: Request,
        response: Response,
        body: Any,
        state: Annotated[Gateway, Depends(gateway)],
        who: Annotated[Caller, Depends(caller)],
        priority: Priority = "normal",
    ) -> JobAccepted:
        tokens = FAMILIES[kind].estimate_tokens(body)
        accepted = await _submit(state, request, who, kind, body, priority, tokens=tokens)
        response.status_code = 200 if accepted.status == "cached" else 202
        return accepted

    create.__annotations__["body"] = model  # the kind's own request model is the body's schema
    create.__name__ = f"create_{kind}"
    router.add_api_route(
        path,
        create,
        methods=["POST"],
        response_model=JobAccepted,
        status_code=202,
        summary=f"submit a stepper.{kind} task",
        responses={200: {"model": JobAccepted, "description": "a fresh cached answer"}},
    )


for _path, (_kind, _model) in TASK_PATHS.items():
    _add_job_route(f"/api/v1/tasks/{_path}", _kind, _model)
_add_job_route("/v1/reports", "report", ReportRequest)


@router.post("/api/v1/tasks/batch", status_code=202, response_model=BatchAccepted, summary="submit several tasks")
async def create_batch(
    request: Request,
    body: BatchRequest,
    state: Annotated[Gateway, Depends(gateway)],
    who: Annotated[Caller, Depends(caller)],
) -> BatchAccepted:
    seen: set[str] = set()
    problems: list[str] = []
    tokens = 0
    validated: list[TaskRequest] = []
    for index, job in enumerate(body.jobs):
        if job.id in seen:
            problems.append(f"jobs.{index}.id: {job.id!r} appears twice")
        seen.add(job.id)
        try:
            parsed = cast(TaskRequest, FAMILIES[job.kind].parse(job.args))
            validated.append(parsed)
            tokens += FAMILIES[job.kind].estimate_tokens(parsed)
            url = getattr(parsed, "callback_url", None)
            if url is not None:
                check_callback_url(url, state.settings.webhooks)
        except InvalidRequest as exc:
            problems.append(f"jobs.{index}.args: {exc}")
    if problems:
        raise InvalidRequest("; ".join(problems))  # nothing was sent
    await admit(state, who, tokens)
    items = []
    for job, parsed in zip(body.jobs, validated, strict=True):
        accepted = await _submit(state, request, who, job.kind, job.args, str(job.priority), parsed)
        items.append(BatchItem(id=job.id, **accepted.model_dump()))
    return BatchAccepted(jobs=items)


@router.get("/api/v1/tasks/{task_id}", response_model=TaskStatus, summary="a task's state, result or error")
async def task_status(
    task_id: str, state: Annotated[Gateway, Depends(gateway)], who: Annotated[Caller, Depends(limited)]
) -> TaskStatus:
    issued = await run_in_threadpool(_issued, state, task_id)
    return await run_in_threadpool(_read_status, state, task_id, issued)


@router.delete("/api/v1/tasks/{task_id}", status_code=202, summary="revoke a task that has not finished")
async def revoke_task(
    task_id: str, state: Annotated[Gateway, Depends(gateway)], who: Annotated[Caller, Depends(limited)]
) -> dict[str, str]:
    issued = await run_in_threadpool(_issued, state, task_id)

    def revoke() -> None:
        state.celery.control.revoke(task_id)
        key = keys.gateway_task(task_id)
        state.redis.set(key, json.dumps({**issued, "revoked": True}), keepttl=True)

    await run_in_threadpool(revoke)
    return {"jobId": task_id, "status": "revoked"}


async def _submit(  # noqa: PLR0917  (one call site per route, all positional)
    state: Gateway,
    request: Request,
    who: Caller,
    kind: Kind,
    body: BaseModel | dict[str, Any],
    priority: str,
    parsed: TaskRequest | None = None,
    tokens: int | None = None,
) -> JobAccepted:
    """Submit one job; ``parsed`` is ``body`` already validated by ``FAMILIES[kind].parse`` (not validated again).
    With ``tokens``, the caller is admitted for the job as it is published (:func:`admitting`), in the same thread
    hop; without, it was admitted already (a batch, for all its jobs)."""
    args = body.model_dump(mode="json", exclude_unset=True) if isinstance(body, BaseModel) else body
    level = priority_from_text(priority)

    def submitting() -> AsyncResult | EagerResult:
        with admitting(state, who, tokens) if tokens is not None else nullcontext():
            return submit(kind, args, priority=level, parsed=parsed, headers=submitted_by(who))

    result = await run_in_threadpool(submitting)
    cached = isinstance(result, EagerResult)
    value = result.result if cached else None
    await run_in_threadpool(_remember, state, result.id, kind, value)
    status_url = str(request.url_for("task_status", task_id=result.id))
    return JobAccepted(status="cached" if cached else "queued", jobId=result.id, statusUrl=status_url, result=value)


def _remember(state: Gateway, task_id: str, kind: Kind, cached: dict[str, Any] | None) -> None:
    """A cached answer has no task in the backend: its result is kept with the id instead."""
    ttl_s = int(state.celery.conf.result_expires or 86400)
    state.redis.set(keys.gateway_task(task_id), json.dumps({"kind": kind, "cached": cached}), ex=ttl_s)


def _issued(state: Gateway, task_id: str) -> dict[str, Any]:
    raw = state.redis.get(keys.gateway_task(task_id)) if len(task_id) <= 200 else None
    if raw is None:
        raise ApiError(
            404, f"no task {task_id!r} was submitted through this gateway (or its result expired)", "not_found"
        )
    issued: dict[str, Any] = json.loads(raw)
    return issued


def _read_status(state: Gateway, task_id: str, issued: dict[str, Any]) -> TaskStatus:
    kind: Kind = issued["kind"]
    if issued.get("cached") is not None:
        result = issued["cached"]
        return TaskStatus(jobId=task_id, kind=kind, state="SUCCESS", result=result, attempts=result.get("attempts", []))
    outcome = AsyncResult(task_id, app=state.celery)
    current = str(outcome.state)
    if current == "SUCCESS" and isinstance(outcome.result, dict):
        result = outcome.result
        return TaskStatus(jobId=task_id, kind=kind, state=current, result=result, attempts=result.get("attempts", []))
    if current in {"FAILURE", "REVOKED"} and isinstance(outcome.result, BaseException):
        exc = outcome.result
        attempts = exc.attempts if isinstance(exc, ChainExhausted) else []
        error = TaskError(type=type(exc).__name__, message=state.redactor.redact(str(exc)))
        return TaskStatus(jobId=task_id, kind=kind, state=current, error=error, attempts=attempts)
    if issued.get("revoked") and current in {"PENDING", "RECEIVED", "STARTED", "RETRY"}:
        current = "REVOKED"
    return TaskStatus(jobId=task_id, kind=kind, state=current)
