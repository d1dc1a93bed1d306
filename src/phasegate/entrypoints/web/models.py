"""The JSON API's bodies as pydantic models: parsed here, and described in OpenAPI from here."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from phasegate.review_brief import ReviewBrief

MAX_COMMENT = 20_000


class StartSession(BaseModel):
    """Start a session of a workflow on a task (id, name or design path)."""

    model_config = ConfigDict(extra="forbid")
    task: str = Field(min_length=1, max_length=1000)
    workflow: str | None = Field(default=None, min_length=1, max_length=200)
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=200)
    again: bool = False  # another session although the task has one in progress


class Decision(BaseModel):
    """A human decision; `expected_version` is the version the human saw (stale → 409)."""

    model_config = ConfigDict(extra="forbid")
    comment: str = Field(default="", max_length=MAX_COMMENT)
    expected_version: int | None = Field(default=None, ge=0, le=2**53)
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=200)


class ErrorBody(BaseModel):
    code: str
    message: str
    phase: str | None = None
    allowed_actions: list[str] = []


class ErrorResponse(BaseModel):
    """Every 4xx/5xx: what happened and what to do; `session` is the current state on 409."""

    error: ErrorBody
    session: dict[str, Any] | None = None


class Lease(BaseModel):
    owner: str
    epoch: int
    expires_at: str


class SessionView(BaseModel):
    """A session as the CLI --json, the API and MCP show it."""

    model_config = ConfigDict(extra="allow")
    id: str
    task: str
    task_id: str
    workflow: str
    phase: str
    version: int
    fix_attempts: int
    max_fix_attempts: int
    waiting_on: str | None
    waiting: str
    waiting_s: float
    stale: bool = Field(description="Waited on an agent longer than the stale_after_s setting")
    paused: bool
    allowed_actions: list[str]
    branch: str | None
    base_commit: str | None
    lease: Lease | None
    created_at: str
    updated_at: str


class SessionDetail(SessionView):
    """A session with its accumulated context (design, tests, failures, feedback…)."""

    context: dict[str, Any]


class SessionPage(BaseModel):
    sessions: list[SessionView]
    limit: int
    next: str | None = Field(
        description="Pass as `after` for the next page (keyset paging); null on the last page"
    )


class TimelineEvent(BaseModel):
    model_config = ConfigDict(extra="allow")
    seq: int
    action: str
    from_phase: str | None
    to_phase: str
    actor_kind: str
    actor_id: str
    actor_role: str | None
    payload: dict[str, Any]
    commit: str | None
    version: int
    created_at: str


class Timeline(BaseModel):
    session_id: str
    events: list[TimelineEvent]


class TestRuns(BaseModel):
    session_id: str
    runs: list[dict[str, Any]]


class SessionDiff(BaseModel):
    session_id: str
    base_commit: str | None
    head: str | None
    diff: str


class Me(BaseModel):
    name: str
    kind: str
    roles: list[str]


class Health(BaseModel):
    status: str
    database: str


class SessionBrief(BaseModel):
    """What a human needs first on a session, as the page and `phasegate show` lead with it."""

    session_id: str
    task: str
    brief: ReviewBrief
