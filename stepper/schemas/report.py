"""``stepper.report``: a structured report about one commit."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from stepper.schemas.common import Strict, TaskRequest

FileStatus = Literal["added", "modified", "removed", "renamed", "copied", "changed", "unchanged"]


class CommitFile(Strict):
    path: str = Field(min_length=1, max_length=4096)
    status: FileStatus
    additions: int = Field(ge=0)
    deletions: int = Field(ge=0)
    patch: str | None = Field(default=None, max_length=2_000_000)


class Commit(Strict):
    sha: str = Field(pattern=r"^[0-9a-fA-F]{7,64}$")
    message: str = Field(min_length=1, max_length=100_000)
    author: str | None = Field(default=None, max_length=512)
    files: list[CommitFile] = Field(max_length=5000)


class ReportRequest(TaskRequest):
    commit: Commit
    repository: str | None = Field(default=None, max_length=512)
    audience: str | None = Field(default=None, max_length=200, description="who reads it, e.g. 'release notes'")


class ChangeNote(Strict):
    path: str
    description: str


class ReportOutput(Strict):
    title: str = Field(min_length=1)
    summary: str = Field(min_length=1)
    changes: list[ChangeNote]
    impact: Literal["low", "medium", "high"]
    tags: list[str]
