"""`get_session_status`: the design, the tests, the current run and the feedback, bounded.

Only the run the agent acts on now is shown whole: the red run (phasegate's
first run of the new tests) until an implementation is run, then the latest
verify run. The other is kept as its verdict with a pointer to the resource,
so a model fixing code never reads the tests' pre-implementation failures.
"""

from __future__ import annotations

from typing import Any

from phasegate.domain.session import Session
from phasegate.domain.workflow import PhaseKind, Workflow
from phasegate.entrypoints.mcp.budget import STATUS_BUDGET, fit
from phasegate.entrypoints.mcp.results import (
    DESIGN_CHARS,
    FILE_CHARS,
    FILES_TOTAL_CHARS,
    PreReview,
    Refusal,
    Refusals,
    SessionFile,
    SetupError,
    StatusResult,
    TestRunSummary,
    TestsView,
    cut,
    failure_items,
    feedback_items,
    run_stub,
    run_summary,
    session_fields,
)
from phasegate.entrypoints.timeline import refusal_words
from phasegate.orchestrator import Orchestrator
from phasegate.reviews import gate_pre_review
from phasegate.workspace import WorkspaceError, read_file_at

REFUSAL_PATHS = 10  # per refusal: enough to see what was tried, bounded for the result


def resource_uri(session_id: str, part: str = "") -> str:
    return f"phasegate://sessions/{session_id}" + (f"/{part}" if part else "")


def build_status(
    orch: Orchestrator, session: Session, message: str, running: TestRunSummary | None = None
) -> StatusResult:
    """The whole working picture of a session for an agent, each part cut to its budget."""
    ctx = session.context
    whole = resource_uri(session.id)
    design_uri = resource_uri(session.id, "design")
    approval = ctx.get("approval_request") or {}
    lease = (
        {
            "owner": session.lease_owner,
            "epoch": session.lease_epoch,
            "expires_at": session.lease_expires_at.isoformat(),
        }
        if session.lease_owner and session.lease_expires_at
        else None
    )
    red, last = orch.stored_runs(ctx.get("red_run"), ctx.get("test_results"))
    red_current = _red_run_is_current(orch.workflow_of(session), session, last is not None)
    failing = (
        last is not None
        and last.get("status") != "passed"
        and not red_current
        and session.phase != "awaiting_final_review"
    )
    refusals = _refusals(ctx.get("refusals"))
    problem = SetupError.model_validate(ctx["setup_error"]) if ctx.get("setup_error") else None
    fields = session_fields(orch, session, message + _refusals_sentence(refusals))
    if problem is not None:
        fields["next_action"] = (
            f"A human is fixing the test setup of session {session.short_id} (the tests could "
            f"not run as configured; setting: {problem.fix}). Call "
            "wait_for_decision(session_id) and change nothing meanwhile."
        )
    if red_current:
        red_run = run_summary(red, whole)
        last_run = run_stub(last, whole, "a run of an earlier implementation, before these tests")
    else:
        red_run = run_stub(red, whole, "phasegate's first run of the tests, before any code")
        last_run = run_summary(last, whole)
    failures = failure_items(list(last.get("failures") or []), whole) if failing and last else []
    if failures and last_run is not None:  # listed once, where next_action points
        last_run.failures = []
        last_run.omitted = f"its failures are in `failures`; its whole output: read {whole}"
    result = StatusResult(
        **fields,
        workflow=session.workflow,
        design=cut(str(ctx.get("design") or ""), DESIGN_CHARS, design_uri),
        design_resource=design_uri,
        tests=_tests_view(orch, session),
        red_run=red_run,
        last_run=last_run,
        failures=failures,
        feedback=feedback_items(ctx.get("feedback")),
        guidance=feedback_items(ctx.get("guidance")),
        approval_request=(
            str(approval.get("message")) if approval.get("phase") == session.phase else None
        ),
        reviews=feedback_items(ctx.get("reviews")),
        pre_review=_pre_review(session),
        lease=lease,
        test_run_in_progress=running,
        refusals=refusals,
        setup_error=problem,
        stale=orch.view(session)["stale"],
    )
    return fit(result, STATUS_BUDGET, whole)


def _pre_review(session: Session) -> PreReview | None:
    found = gate_pre_review(session)
    if found is None:
        return None
    found["summary"] = cut(str(found.get("summary", "")), 4_000, "the session timeline")
    return PreReview.model_validate(found)


def _red_run_is_current(wf: Workflow, session: Session, verified: bool) -> bool:
    """Whether the red run is the newest evidence: writing tests or code, or the test review."""
    if not verified:
        return True
    tests = {p.name for p in wf.phases if p.submission == "tests"}
    writing = tests | {p.name for p in wf.phases if p.submission == "implementation"}
    came_from = {t.source for t in wf.transitions if t.target == session.phase}
    review = (
        wf.phase(session.phase).kind is PhaseKind.HUMAN and bool(came_from) and came_from <= tests
    )
    return session.phase in writing or review


def _refusals(stored: dict[str, Any] | None) -> Refusals:
    """The context's record of refused submissions, each cut to a few paths."""
    if not stored:
        return Refusals()
    recent = [
        Refusal.model_validate(
            {
                **entry,
                "paths": entry.get("paths", [])[:REFUSAL_PATHS],
                "more_paths": max(0, len(entry.get("paths", [])) - REFUSAL_PATHS)
                + int(entry.get("more_paths") or 0),
            }
        )
        for entry in stored.get("recent") or []
    ]
    return Refusals(count=int(stored.get("count") or 0), recent=recent)


def _refusals_sentence(refusals: Refusals) -> str:
    """One sentence on earlier refusals, so an agent stops repeating what was refused."""
    if not refusals.count or not refusals.recent:
        return ""
    last = refusals.recent[-1]
    n = refusals.count
    return (
        f" {n} submission{'s' if n != 1 else ''} to this session {'were' if n != 1 else 'was'} "
        f"refused so far; the last one ({last.submission}) "
        f"{refusal_words(last.model_dump())}: see `refusals`."
    )


def _tests_view(orch: Orchestrator, session: Session) -> TestsView | None:
    """The approved tests (read from git at the approved commit), or the submitted ones."""
    ctx = session.context
    approved: dict[str, Any] = ctx.get("approved_tests") or {}
    submitted: dict[str, Any] = ctx.get("tests") or {}
    if approved.get("commit"):
        commit, paths = str(approved["commit"]), sorted(approved.get("hashes") or {})
    elif submitted.get("commit"):
        commit, paths = str(submitted["commit"]), list(submitted.get("paths") or [])
    else:
        return None
    worktree = orch.project.root / str(ctx.get("worktree", ""))
    pointer = f"the file at commit {commit[:10]} in the session's worktree"
    files: list[SessionFile] = []
    budget = FILES_TOTAL_CHARS
    for path in paths:
        if budget <= 0:
            files.append(
                SessionFile(path=path, content=f"[not shown: over the size budget; read {pointer}]")
            )
            continue
        try:
            text = read_file_at(worktree, commit, path)
        except WorkspaceError as exc:
            text = f"[can't read: {exc}]"
        text = cut(text, min(FILE_CHARS, budget), pointer)
        budget -= len(text)
        files.append(SessionFile(path=path, content=text))
    return TestsView(commit=commit, approved=bool(approved.get("commit")), files=files)
