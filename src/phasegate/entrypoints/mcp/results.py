"""The structured results the MCP tools return, and how their parts are cut to size.

Every result is self-sufficient (some clients show only `structuredContent`):
it names the session, its phase, the tools the agent may call now
(`allowed_actions`: tool names only, never the workflow's human actions), one
sentence of advice, and what the call did. Long texts are cut with a pointer
to the resource that holds the whole; budget.py bounds a result as a whole.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from phasegate.domain.session import Session, SessionHeader, describe_wait
from phasegate.entrypoints.mcp.guidance import agent_tools, next_action
from phasegate.orchestrator import Orchestrator

DESIGN_CHARS = 8_000
FILE_CHARS = 6_000
FILES_TOTAL_CHARS = 24_000
FAILURES_SHOWN = 10
FAILURE_CHARS = 1_500
OUTPUT_TAIL_CHARS = 2_000
#: With the failures parsed, the tail only needs the runner's summary lines.
PARSED_TAIL_CHARS = 600
FEEDBACK_SHOWN = 5
# pytest's section rules: `==== FAILURES ====`, `==== short test summary info ====`
_RULE = re.compile(r"^=+ (.+?) =+$")
_TRACEBACK_SECTIONS = ("FAILURES", "ERRORS")


def cut(text: str, limit: int, pointer: str) -> str:
    """`text`, or its first `limit` characters and a note saying where the rest is."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}\n… [cut: {len(text) - limit} more characters; read {pointer}]"


def cut_start(text: str, limit: int, pointer: str) -> str:
    """`text`, or its last `limit` characters after a note saying where the rest is."""
    if len(text) <= limit:
        return text
    return f"[… {len(text) - limit} earlier characters cut; read {pointer}]\n{text[-limit:]}"


class FileItem(BaseModel):
    """A file to write in the session's worktree; `content: null` deletes it."""

    model_config = ConfigDict(extra="forbid")  # a misspelt key must not be dropped silently

    path: str = Field(
        min_length=1,
        max_length=1024,
        description="Path relative to the repository root, e.g. tests/test_calc.py",
    )
    content: str | None = Field(description="The whole new file content; null deletes the file")


class SessionResult(BaseModel):
    """The session after the call: where it is, what the agent may do, what to do next."""

    session_id: str
    task: str
    phase: str
    paused: bool
    version: int
    waiting: str = Field(description="What the session waits for, in words")
    allowed_actions: list[str] = Field(description="The tools you may call for it now")
    next_action: str = Field(description="What you should do now")
    message: str = Field(description="What this call did")
    fix_attempts: int
    fix_attempts_left: int


class FailureItem(BaseModel):
    id: str
    outcome: str
    message: str
    traceback: str = ""


class TestRunSummary(BaseModel):
    """A test run phasegate did itself: verdict, counts and the first failures."""

    __test__ = False

    status: str = Field(description="passed | failed | error | running")
    reason: str = ""
    counts: dict[str, int] = Field(default_factory=dict)
    failures: list[FailureItem] = Field(default_factory=list)
    failures_total: int = 0
    output_tail: str = ""
    commit: str | None = None
    run_id: str | None = None
    duration_s: float | None = None
    warnings: list[str] = Field(default_factory=list, description="What the reviewer is told")
    handle: str | None = Field(
        None,
        description="While status is running: call run_tests or "
        "get_session_status to get the result",
    )
    omitted: str | None = Field(
        None, description="What this summary leaves out, and where to read it"
    )


class SessionFile(BaseModel):
    path: str
    content: str


class TestsView(BaseModel):
    __test__ = False

    commit: str
    approved: bool = Field(description="Approved tests are locked: you may not change them")
    files: list[SessionFile]
    more_files: int = Field(0, description="Files left out to keep the result small")


class Feedback(BaseModel):
    phase: str
    by: str
    comment: str


class Finding(BaseModel):
    path: str
    line: int
    comment: str


class FindingItem(BaseModel):
    """One finding of a pre-review, as an agent sends it."""

    path: str = Field(min_length=1, max_length=1000, description="The file it is about")
    line: int = Field(ge=1, description="The line it is about")
    comment: str = Field(min_length=1, max_length=2000, description="What is wrong, and why")


class PreReview(BaseModel):
    """A reviewer agent's findings at the gate the session waits at; a human decides."""

    by: str
    verdict: str = Field(description="The reviewer's suggestion: approve or reject")
    summary: str
    findings: list[Finding]


class Refusal(BaseModel):
    """A submission phasegate refused: what was tried (paths only) and why."""

    submission: str = Field(description="submit_tests | submit_implementation | fix_failures")
    cause: str = Field(description="locked_test | forbidden_path | lease | refused")
    reason: str
    paths: list[str] = Field(description="The paths the submission named (never contents)")
    more_paths: int = 0
    phase: str
    by: str


class Refusals(BaseModel):
    count: int = Field(0, description="Submissions refused in this session so far")
    recent: list[Refusal] = Field(default_factory=list, description="The newest ones")


class SetupError(BaseModel):
    """The tests could not run as configured; a human fixes the setting, then retries."""

    at: str = Field(description="verify (a test run) | red_run (the first run of new tests)")
    reason: str
    fix: str = Field(description="The setting the human has to fix")
    config: str | None = Field(None, description="The hash of the configuration that failed")
    run_id: str | None = None


class StatusResult(SessionResult):
    """Everything an agent needs to work on the session, bounded in size."""

    workflow: str
    design: str = ""
    design_resource: str
    tests: TestsView | None = None
    red_run: TestRunSummary | None = None
    last_run: TestRunSummary | None = None
    failures: list[FailureItem] = Field(default_factory=list)
    feedback: list[Feedback] = Field(default_factory=list)
    guidance: list[Feedback] = Field(default_factory=list)
    approval_request: str | None = None
    reviews: list[Feedback] = Field(
        default_factory=list, description="The reviewer's analyses of the failures, for the coder"
    )
    pre_review: PreReview | None = None
    lease: dict[str, Any] | None = None
    test_run_in_progress: TestRunSummary | None = None
    refusals: Refusals = Field(default_factory=Refusals)
    setup_error: SetupError | None = None
    stale: bool = Field(False, description="Waited on an agent longer than stale_after_s")


class SubmitResult(SessionResult):
    commit: str
    paths: list[str]
    deleted: list[str]
    red_run: TestRunSummary | None = Field(
        None, description="For submit_tests: phasegate's first run of the new tests"
    )


class RunTestsResult(SessionResult):
    run: TestRunSummary


class DecisionResult(SessionResult):
    decided: bool = Field(description="True once a human decided (or the session moved on)")
    decision: str | None = Field(None, description="approve | reject | retry | … as decided")
    decided_by: str | None = None
    comment: str | None = Field(None, description="The reviewer's comment, if any")


class SessionSummary(BaseModel):
    session_id: str
    task: str
    phase: str
    paused: bool
    waiting_on: str | None
    allowed_actions: list[str]
    fix_attempts: int


class ListResult(BaseModel):
    sessions: list[SessionSummary]
    count: int
    next: str | None = Field(
        default=None, description="Pass as `after` to list the next page; null on the last page"
    )
    message: str
    next_action: str


class ClaimResult(BaseModel):
    claimed: bool
    message: str
    next_action: str
    session: StatusResult | None = None
    lease_expires_at: str | None = None
    lease_epoch: int | None = None


def session_fields(orch: Orchestrator, session: Session, message: str) -> dict[str, Any]:
    """The fields every session result shares."""
    wf = orch.workflow_of(session)
    return {
        "session_id": session.id,
        "task": session.task_name,
        "phase": session.phase,
        "paused": session.paused,
        "version": session.version,
        "waiting": describe_wait(wf, session),
        "allowed_actions": agent_tools(wf, session),
        "next_action": next_action(wf, session),
        "message": message,
        "fix_attempts": session.fix_attempts,
        "fix_attempts_left": max(0, wf.max_fix_attempts - session.fix_attempts),
    }


def summary(orch: Orchestrator, session: SessionHeader) -> SessionSummary:
    wf = orch.workflow_of(session)
    view = orch.view(session)
    return SessionSummary(
        session_id=session.id,
        task=session.task_name,
        phase=session.phase,
        paused=session.paused,
        waiting_on=view["waiting_on"],
        allowed_actions=agent_tools(wf, session),
        fix_attempts=session.fix_attempts,
    )


def run_summary(data: dict[str, Any] | None, pointer: str) -> TestRunSummary | None:
    """A stored run (evidence dict or context summary) as a bounded summary."""
    if not data:
        return None
    failures = list(data.get("failures") or [])
    return TestRunSummary(
        status=str(data.get("status", "unknown")),
        reason=str(data.get("reason", "")),
        counts=dict(data.get("counts") or {}),
        failures=failure_items(failures, pointer),
        failures_total=len(failures) or int(data.get("failures_total") or 0),
        output_tail=output_tail(str(data.get("output_tail") or ""), bool(failures), pointer),
        warnings=[str(w) for w in data.get("warnings") or []],
        commit=data.get("commit"),
        run_id=data.get("run_id"),
        duration_s=data.get("duration_s"),
    )


def run_stub(data: dict[str, Any] | None, pointer: str, why: str) -> TestRunSummary | None:
    """An earlier run as its verdict only: `why` it is not the one to act on, and where it is."""
    run = run_summary(data, pointer)
    if run is None:
        return None
    return run.model_copy(
        update={
            "failures": [],
            "output_tail": "",
            "warnings": [],
            "omitted": f"{why}; its failures and output: read {pointer}",
        }
    )


def output_tail(tail: str, failures_parsed: bool, pointer: str) -> str:
    """The end of a run's output, without the tracebacks already given in `failures`."""
    if failures_parsed:
        tail = _without_tracebacks(tail, pointer)
    return cut_start(tail, OUTPUT_TAIL_CHARS, pointer)


def _without_tracebacks(tail: str, pointer: str) -> str:
    """pytest's FAILURES/ERRORS sections replaced by a note (or, for others, the last lines)."""
    note = f"[… tracebacks cut: they are in `failures`; the whole output: read {pointer}]"
    lines = tail.splitlines()
    rules = [(i, m.group(1)) for i, line in enumerate(lines) if (m := _RULE.match(line.strip()))]
    start = next((i for i, title in rules if title in _TRACEBACK_SECTIONS), None)
    if start is not None:
        end = next(
            (i for i, title in rules if i > start and title not in _TRACEBACK_SECTIONS),
            len(lines),
        )
        return "\n".join([*lines[:start], note, *lines[end:]])
    summary = next((i for i, title in rules if title.startswith("short test summary")), None)
    if summary is not None:  # the sections scrolled out of the stored tail
        return "\n".join([note, *lines[summary:]])
    if len(tail) <= PARSED_TAIL_CHARS:
        return tail
    return f"{note}\n{tail[-PARSED_TAIL_CHARS:]}"


def failure_items(failures: list[dict[str, Any]], pointer: str) -> list[FailureItem]:
    return [
        FailureItem(
            id=str(f.get("id", "")),
            outcome=str(f.get("outcome", "failed")),
            message=cut(str(f.get("message", "")), FAILURE_CHARS, pointer),
            traceback=cut(str(f.get("traceback", "")), FAILURE_CHARS, pointer),
        )
        for f in failures[:FAILURES_SHOWN]
    ]


def feedback_items(entries: list[dict[str, Any]] | None) -> list[Feedback]:
    return [
        Feedback(
            phase=str(e.get("phase", "")),
            by=str(e.get("by", "")),
            comment=cut(str(e.get("comment", "")), 4_000, "the session timeline"),
        )
        for e in (entries or [])[-FEEDBACK_SHOWN:]
    ]
