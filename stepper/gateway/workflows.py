"""Workflow routes: start a ``howto`` workflow, read its status, resume or cancel it, follow its progress.

Progress is a ``text/event-stream``: a ``status`` event (the whole status, JSON) whenever it changes, and an
``end`` event once the workflow is done, waiting for resume or cancelled. A client leaving the stream cancels
nothing: the workflow is not the stream's, unlike a streamed chat answer.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from stepper.errors import InvalidRequest
from stepper.gateway.auth import Caller
from stepper.gateway.cancellation import EventStream, Relay
from stepper.gateway.errors import ApiError
from stepper.gateway.jobs import Priority
from stepper.gateway.state import Gateway, admit, caller, gateway, limited
from stepper.priorities import priority_from_text
from stepper.workflows import api
from stepper.workflows.schemas import HowtoRequest, WorkflowStatus

#: How often the event stream reads the workflow's status (seconds), and sends a comment when nothing changed.
POLL_S = 0.5
KEEPALIVE_S = 15.0
#: A stream ends after this long even if the workflow does not (the client reconnects to follow on).
MAX_STREAM_S = 3600.0

router = APIRouter(tags=["workflows"])


class WorkflowAccepted(BaseModel):
    workflowId: str  # camelCase: the HTTP contract's spelling, as jobId
    statusUrl: str
    eventsUrl: str


@router.post(
    "/api/v1/workflows/howto",
    status_code=202,
    response_model=WorkflowAccepted,
    summary="start a how-to guide from a screen recording or screenshots",
)
async def create_howto(
    request: Request,
    body: HowtoRequest,
    state: Annotated[Gateway, Depends(gateway)],
    who: Annotated[Caller, Depends(caller)],
    priority: Priority = "normal",
) -> WorkflowAccepted:
    await admit(state, who)
    level = priority_from_text(priority)
    args = body.model_dump(mode="json", exclude_none=True)
    handle = await run_in_threadpool(lambda: api.workflow("howto", args, priority=level, app=state.celery))
    return _accepted(request, handle.id)


@router.get("/api/v1/workflows/{workflow_id}", response_model=WorkflowStatus, summary="a workflow's progress")
async def workflow_status(
    workflow_id: str, state: Annotated[Gateway, Depends(gateway)], who: Annotated[Caller, Depends(limited)]
) -> WorkflowStatus:
    return await run_in_threadpool(_status, state, workflow_id)


@router.post(
    "/api/v1/workflows/{workflow_id}/resume",
    status_code=202,
    response_model=WorkflowAccepted,
    summary="run what a workflow misses: its failed pieces, never the done ones",
)
async def resume_workflow(
    request: Request,
    workflow_id: str,
    state: Annotated[Gateway, Depends(gateway)],
    who: Annotated[Caller, Depends(limited)],
) -> WorkflowAccepted:
    await run_in_threadpool(_status, state, workflow_id)  # 404 first
    await run_in_threadpool(lambda: api.resume_workflow(workflow_id, app=state.celery))
    return _accepted(request, workflow_id)


@router.delete("/api/v1/workflows/{workflow_id}", status_code=202, summary="cancel a workflow and its pieces")
async def cancel_workflow(
    workflow_id: str, state: Annotated[Gateway, Depends(gateway)], who: Annotated[Caller, Depends(limited)]
) -> dict[str, str]:
    await run_in_threadpool(_status, state, workflow_id)
    await run_in_threadpool(lambda: api.cancel_workflow(workflow_id, app=state.celery))
    return {"workflowId": workflow_id, "status": "cancelled"}


@router.get(
    "/api/v1/workflows/{workflow_id}/events",
    summary="a workflow's progress as server-sent events",
    response_model=None,
    responses={200: {"content": {"text/event-stream": {}}, "description": "status events, then end"}},
)
async def workflow_events(
    workflow_id: str, state: Annotated[Gateway, Depends(gateway)], who: Annotated[Caller, Depends(limited)]
) -> EventStream:
    first = await run_in_threadpool(_status, state, workflow_id)
    relay = Relay()

    async def nothing() -> None:  # the workflow goes on without its watcher
        return None

    return EventStream(_events(state, first), relay, nothing)


def _events(state: Gateway, status: WorkflowStatus) -> Iterator[str]:
    """``status`` events as the workflow changes, ``end`` at a state that waits for nobody but the caller."""
    sent = ""
    started = last_sent = time.monotonic()
    while True:
        text = status.model_dump_json(exclude={"result"} if status.state != "SUCCESS" else set())
        if text != sent:
            yield f"event: status\ndata: {text}\n\n"
            sent, last_sent = text, time.monotonic()
        if status.state != "RUNNING":
            yield f"event: end\ndata: {json.dumps({'state': status.state})}\n\n"
            return
        if time.monotonic() - started > MAX_STREAM_S:
            return
        if time.monotonic() - last_sent > KEEPALIVE_S:
            yield ": keep-alive\n\n"
            last_sent = time.monotonic()
        time.sleep(POLL_S)
        status = _status(state, status.id)


def _status(state: Gateway, workflow_id: str) -> WorkflowStatus:
    if len(workflow_id) > 200:
        raise ApiError(404, "no such workflow", "not_found")
    try:
        return api.workflow_status(workflow_id, app=state.celery)
    except InvalidRequest as exc:
        raise ApiError(404, str(exc), "not_found") from None


def _accepted(request: Request, workflow_id: str) -> WorkflowAccepted:
    return WorkflowAccepted(
        workflowId=workflow_id,
        statusUrl=str(request.url_for("workflow_status", workflow_id=workflow_id)),
        eventsUrl=str(request.url_for("workflow_events", workflow_id=workflow_id)),
    )
