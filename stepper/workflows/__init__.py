"""Workflows: multi-stage jobs built from the family tasks with Celery's canvas, their state kept in Redis so a
failed one resumes where it stopped.

    schemas.py   the request, the guide and the status, as pydantic models
    store.py     a workflow's state under its id (Redis hash, expiring with the results)
    howto.py     the ``howto`` stages: which pieces are missing, and the canvas that computes them
    writing.py   the prompts of the writing stage and the strict validation of their answers
    assemble.py  the guide: JSON, Markdown, a self-contained HTML page and one narration file
    tasks.py     the small Celery tasks that record pieces and advance a workflow (queue ``workflows``)
    api.py       the producer side: start, status, resume, cancel
    export.py    a finished guide written out as files (the CLI's --out, make run)
"""
