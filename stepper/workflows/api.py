"""The producer side of workflows: start one, read its status, wait for its result, resume it, cancel it."""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING, Any

from celery.result import AsyncResult
from pydantic import ValidationError

from stepper.config import current_settings, parse_stepper_settings
from stepper.errors import Cancelled, InvalidRequest, WorkflowFailed
from stepper.outcomes.webhooks import check_callback_url
from stepper.priorities import PriorityName, priority_value
from stepper.schemas.common import describe_validation_error
from stepper.workflows import howto
from stepper.workflows.schemas import WORKFLOWS, Guide, HowtoRequest, PieceStatus, WorkflowStatus
from stepper.workflows.store import Meta, Snapshot, open_store

if TYPE_CHECKING:
    from celery import Celery

#: The workflow tasks' names and queue (stepper.workflows.tasks, which loads the Celery app, says the same).
ADVANCE = "stepper.workflow.advance"
QUEUE = "workflows"

#: How often ``get`` reads the status while it waits.
POLL_INTERVAL_S = 0.25


class WorkflowHandle:
    """A started workflow: ``id``, ``status()``, ``get(timeout_s)``, ``resume()``, ``cancel()``."""

    def __init__(self, workflow_id: str, app: Celery | None = None) -> None:
        self.id = workflow_id
        self.app = app

    def status(self) -> WorkflowStatus:
        return workflow_status(self.id, app=self.app)

    def get(self, timeout: float = 600.0) -> Guide:
        """Wait for the guide. Raises ``WorkflowFailed`` when a piece failed for good (the workflow then
        waits for resume), ``Cancelled`` when it was cancelled, ``TimeoutError`` after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            status = self.status()
            if status.state == "SUCCESS" and status.result is not None:
                return status.result
            if status.state == "WAITING":
                raise WorkflowFailed(f"workflow {self.id} stopped: {status.error}; resume it once fixed", self.id)
            if status.state == "CANCELLED":
                raise Cancelled(f"workflow {self.id} was cancelled")
            if time.monotonic() >= deadline:
                raise TimeoutError(f"workflow {self.id} is not done after {timeout:g}s (stage {status.stage})")
            time.sleep(POLL_INTERVAL_S)

    def resume(self) -> WorkflowHandle:
        return resume_workflow(self.id, app=self.app)

    def cancel(self) -> None:
        cancel_workflow(self.id, app=self.app)

    def __repr__(self) -> str:
        return f"<WorkflowHandle {self.id}>"


def workflow(
    name: str, request: dict[str, Any], *, priority: PriorityName | int = "normal", app: Celery | None = None
) -> WorkflowHandle:
    """Start workflow ``name`` (``howto``) on ``request`` ({"video": {...}} or {"frames": [...]}, optional
    ``language``, ``audience``, ``voice``, ``callback_url``). The request is validated here: a bad one raises
    ``InvalidRequest`` naming the field, before anything is stored or sent. ``app``: another Celery app to
    send through (``stepper.celery.app`` by default), as for every function here."""
    if name not in WORKFLOWS:
        raise InvalidRequest(f"unknown workflow {name!r}: use one of {', '.join(WORKFLOWS)}")
    try:
        parsed = HowtoRequest.model_validate(request)
    except ValidationError as exc:
        raise InvalidRequest(f"invalid {name} request: {describe_validation_error(exc)}") from None
    settings = current_settings() if app is None else parse_stepper_settings(app.conf)
    if parsed.callback_url is not None:
        check_callback_url(parsed.callback_url, settings.webhooks)
    workflow_id = str(uuid.uuid4())
    meta = Meta(name, parsed.model_dump(mode="json", exclude_none=True), priority_value(priority), parsed.callback_url)
    app = _app(app)
    open_store(app).create(workflow_id, meta)
    _send_advance(app, workflow_id, meta.priority)
    return WorkflowHandle(workflow_id, app)


def workflow_status(workflow_id: str, *, app: Celery | None = None) -> WorkflowStatus:
    """Where the workflow is: its state and stage, each stage's progress, each piece's state (and why a
    failed one failed), and the guide once it is done. ``InvalidRequest`` for an unknown id."""
    return describe(open_store(_app(app)).load(workflow_id))


def describe(snapshot: Snapshot) -> WorkflowStatus:
    pieces: dict[str, PieceStatus] = {}
    for _stage, names in howto.stage_pieces(snapshot):
        for piece in names:
            if piece in snapshot.done:
                pieces[piece] = PieceStatus(state="done")
            elif piece in snapshot.failed:
                why = snapshot.failed[piece]
                pieces[piece] = PieceStatus(
                    state="failed", task_id=why["task_id"], error=f"{why['type']}: {why['message']}"
                )
            elif piece in snapshot.running:
                pieces[piece] = PieceStatus(state="running", task_id=snapshot.running[piece])
            else:
                pieces[piece] = PieceStatus(state="pending")
    guide = snapshot.done.get("assemble")
    return WorkflowStatus(
        id=snapshot.id,
        workflow="howto",
        state=snapshot.state,
        stage=snapshot.stage,
        progress=howto.progress(snapshot),
        pieces=pieces,
        error=snapshot.error,
        result=Guide.model_validate(guide) if guide is not None else None,
    )


def resume_workflow(workflow_id: str, *, app: Celery | None = None) -> WorkflowHandle:
    """Run what the workflow misses: its failed pieces, and pieces whose task ended without a record. Pieces
    done are kept and never computed again; a finished workflow is left as it is. A cancelled workflow
    resumes too (its revoked pieces run again)."""
    app = _app(app)
    store = open_store(app)
    snapshot = store.load(workflow_id)
    if snapshot.state == "SUCCESS":
        return WorkflowHandle(workflow_id, app)
    ended = [piece for piece, task_id in snapshot.running.items() if AsyncResult(task_id, app=app).ready()]
    store.release(workflow_id, ended)
    store.resumed(workflow_id, list(snapshot.failed))
    _send_advance(app, workflow_id, snapshot.meta.priority)
    return WorkflowHandle(workflow_id, app)


def cancel_workflow(workflow_id: str, *, app: Celery | None = None) -> None:
    """Stop the workflow: nothing more is dispatched, and its queued and running pieces are revoked (a running
    vendor call is closed, as ``stepper.cancel`` does). ``resume_workflow`` can start it again. A finished
    workflow is left as it is."""
    app = _app(app)
    store = open_store(app)
    if store.load(workflow_id).state == "SUCCESS":  # InvalidRequest for an unknown id, before anything is written
        return  # nothing left to stop: the guide stays
    store.set_state(workflow_id, "CANCELLED")
    running = store.load(workflow_id).running
    if running:
        app.control.revoke(list(running.values()))
    store.release(workflow_id, list(running))


def _app(app: Celery | None) -> Celery:
    if app is not None:
        return app
    from stepper.celery import app as default_app

    return default_app


def _send_advance(app: Celery, workflow_id: str, priority: int) -> None:
    app.send_task(ADVANCE, args=(workflow_id,), queue=QUEUE, priority=priority)
