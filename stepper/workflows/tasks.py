"""The workflow's own small tasks, on the ``workflows`` queue: advance a workflow, record a piece, note a
piece's final failure, assemble the guide. The vendors are reached only through the family tasks."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from typing import Any

from celery import Task, group
from celery.canvas import Signature
from pydantic import ValidationError

from stepper.celery import app
from stepper.errors import StepperError, WorkflowFailed
from stepper.outcomes.deadletter import dead_letter
from stepper.outcomes.webhooks import check_callback_url, schedule_webhook
from stepper.schemas.speech import Audio
from stepper.workflows import howto
from stepper.workflows.api import ADVANCE, QUEUE
from stepper.workflows.assemble import assemble
from stepper.workflows.schemas import Heading
from stepper.workflows.store import Snapshot, WorkflowStore, open_store

log = logging.getLogger(__name__)

RECORD, FAILED, ASSEMBLE = (f"stepper.workflow.{name}" for name in ("record", "failed", "assemble"))


@app.task(name=ADVANCE, ignore_result=True)
def advance_task(workflow_id: str) -> None:
    """Send the pieces the workflow misses next (see :func:`advance`)."""
    advance(open_store(), workflow_id)


def advance(store: WorkflowStore, workflow_id: str) -> None:
    """Dispatch the current stage's missing pieces that nobody computes yet; a workflow that is not RUNNING
    (waiting for resume, cancelled, done) is left alone."""
    snapshot = store.load(workflow_id)
    if snapshot.state != "RUNNING":
        return
    stage, missing = howto.current_stage(snapshot)
    if stage == "done":
        return
    if stage != snapshot.stage:
        store.set_stage(workflow_id, stage)
    claimed = {piece: str(uuid.uuid4()) for piece in missing}
    claimed = {piece: task_id for piece, task_id in claimed.items() if store.claim(workflow_id, piece, task_id)}
    # Claimed, then checked: a cancel that came in between either is seen here, or sees the claims and
    # revokes their task ids (a revoke is recorded, so a message sent after it still never runs).
    if store.load(workflow_id).state != "RUNNING":
        store.release(workflow_id, list(claimed))
        return
    if claimed:
        group(_piece(snapshot, piece, task_id) for piece, task_id in claimed.items()).apply_async()


def _piece(snapshot: Snapshot, piece: str, task_id: str) -> Signature:
    """``piece``'s chain: its family task, then the record of its output (or the assemble task)."""
    options = {"priority": snapshot.meta.priority}
    if piece == "assemble":
        return app.signature(ASSEMBLE, args=(snapshot.id,), immutable=True, task_id=task_id, queue=QUEUE, **options)
    name, request = howto.family_request(snapshot, piece)
    computed = app.signature(name, kwargs=request, immutable=True, task_id=task_id, **options)
    computed.on_error(app.signature(FAILED, args=(snapshot.id, piece), queue=QUEUE, **options))
    return computed | app.signature(RECORD, args=(snapshot.id, piece), queue=QUEUE, **options)


@app.task(name=RECORD, bind=True, ignore_result=True)
def record_task(self: Task, result: dict[str, Any], workflow_id: str, piece: str) -> None:
    """Keep a piece's validated output, then advance the workflow; an unusable output fails the piece."""
    store = open_store()
    snapshot = store.load(workflow_id)
    if snapshot.state == "CANCELLED":
        return
    try:
        output = howto.validated(snapshot, piece, result)
    except (StepperError, ValidationError) as exc:
        piece_failed(store, snapshot, piece, exc, str(self.request.parent_id or self.request.id))
        return
    store.done(workflow_id, piece, output)
    advance(store, workflow_id)


@app.task(name=FAILED, ignore_result=True)
def failed_task(request: Any, exc: BaseException, traceback: Any, workflow_id: str, piece: str) -> None:
    """Celery's errback of a piece's family task, once its failure is final (its retries are spent)."""
    del traceback
    store = open_store()
    snapshot = store.load(workflow_id)
    if snapshot.state == "CANCELLED":
        return
    piece_failed(store, snapshot, piece, exc, str(getattr(request, "id", "")))


def piece_failed(store: WorkflowStore, snapshot: Snapshot, piece: str, error: BaseException, task_id: str) -> None:
    """The workflow waits for resume: the failure is stored, dead-lettered with a pointer to the workflow,
    and the workflow's callback is told."""
    store.failed(snapshot.id, piece, type(error).__name__, str(error), task_id)
    pointer = {
        "workflow_id": snapshot.id,
        "workflow": snapshot.meta.workflow,
        "piece": piece,
        "task_id": task_id,
        "resume": f"stepper workflow resume {snapshot.id}",
    }
    dead_letter(snapshot.id, f"workflow.{snapshot.meta.workflow}", pointer, error, [], 0)
    failure = WorkflowFailed(f"piece {piece} failed: {type(error).__name__}: {error}", snapshot.id)
    notify(snapshot, "workflow.failed", error=failure)


@app.task(name=ASSEMBLE, bind=True, ignore_result=True)
def assemble_task(self: Task, workflow_id: str) -> None:
    """Build the guide from the stored pieces; the workflow ends SUCCESS with it as its result."""
    store = open_store()
    snapshot = store.load(workflow_id)
    if snapshot.state != "RUNNING":
        return
    steps = howto.steps_of(snapshot)
    request = snapshot.meta.request
    try:
        guide = assemble(
            Heading.model_validate(snapshot.done["title"]),
            str(request.get("language") or "English"),
            steps,
            [snapshot.done[f"write:{i}"]["instruction"] for i in range(len(steps))],
            [Audio.model_validate(snapshot.done[f"narrate:{i}"]) for i in range(len(steps))],
        )
    except (StepperError, ValueError, OSError) as exc:
        piece_failed(store, snapshot, "assemble", exc, str(self.request.id))
        return
    result = guide.model_dump(mode="json")
    store.done(workflow_id, "assemble", result)
    store.set_stage(workflow_id, "done", "SUCCESS")
    notify(snapshot, "workflow.succeeded", result=result)


def notify(
    snapshot: Snapshot, event: str, *, result: dict[str, Any] | None = None, error: BaseException | None = None
) -> None:
    """POST the workflow's outcome to its ``callback_url``, signed as task outcomes are."""
    url = snapshot.meta.callback_url
    if url is None:
        return
    from stepper.config import current_settings

    payload = {
        "event": event,
        "workflow_id": snapshot.id,
        "workflow": snapshot.meta.workflow,
        "status": "FAILURE" if error is not None else "SUCCESS",
        "result": result,
        "error": {"type": type(error).__name__, "message": str(error)} if error is not None else None,
        "sent_at": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
    }
    try:
        check_callback_url(url, current_settings().webhooks)
        schedule_webhook(url, event, payload, app)
    except StepperError as exc:
        log.warning("not calling back workflow %s (%s): %s", snapshot.id, event, exc)
