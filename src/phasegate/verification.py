"""Verification: phasegate runs the approved tests itself and records the evidence.

A run happens outside any transaction, under a runner lease kept alive by
heartbeats; its result is recorded only if that lease's epoch is still
current, so a run that lost its lease can't move the session.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection

from phasegate.domain.principal import Principal
from phasegate.domain.session import SYSTEM, Command, Session
from phasegate.domain.workflow import PhaseKind
from phasegate.errors import ConfigError, Conflict, InvalidTransition
from phasegate.leases import acquire_for_run, keep_lease, release
from phasegate.store import queries as q
from phasegate.testrun import TestRunError, TestRunEvidence, run_tests
from phasegate.workspace import (
    DEFAULT_TEST_PATTERNS,
    TestPatterns,
    snapshot_protected,
    verify_snapshot,
)

if TYPE_CHECKING:
    from phasegate.orchestrator import Orchestrator

Progress = Callable[[str], None]


def test_patterns(orch: Orchestrator) -> TestPatterns:
    settings = orch.project.settings.tests
    return TestPatterns(
        test_globs=tuple(settings.globs)
        if settings.globs is not None
        else DEFAULT_TEST_PATTERNS.test_globs,
        runner_config=(
            tuple(settings.runner_config)
            if settings.runner_config is not None
            else DEFAULT_TEST_PATTERNS.runner_config
        ),
    )


def execute(
    orch: Orchestrator,
    run_id: str,
    commit: str,
    approved_ids: frozenset[str] | None,
    progress: Progress | None = None,
) -> TestRunEvidence:
    settings = orch.project.settings

    last_report = [0.0]

    def on_output(nbytes: int) -> None:
        now = time.monotonic()
        if progress and now - last_report[0] >= 1.0:  # a line a second, not one per chunk
            last_report[0] = now
            progress(f"tests running: {nbytes} bytes of output so far")

    try:
        return run_tests(
            orch.project.root,
            commit,
            settings.test_command,
            timeout_s=settings.test_timeout_s,
            junit_path=settings.junit_path,
            approved_test_ids=approved_ids,
            env_allow=tuple(settings.env_allow),
            on_output=on_output if progress else None,
            keep_report=report_path(orch, run_id),
        )
    except TestRunError as exc:
        raise ConfigError(f"can't run the tests: {exc}; check test_command and junit_path") from exc


def report_path(orch: Orchestrator, run_id: str) -> Path:
    """Where a run's JUnit report is kept as evidence."""
    return orch.project.state_dir / "runs" / f"{run_id}.xml"


def insert_run(
    orch: Orchestrator,
    conn: Connection,
    run_id: str,
    session_id: str,
    kind: str,
    commit: str,
    evidence: TestRunEvidence,
    warnings: list[str] | None = None,
) -> None:
    q.insert_test_run(
        conn,
        {
            "id": run_id,
            "session_id": session_id,
            "kind": kind,
            "commit": commit,
            "status": evidence.status,
            "reason": evidence.reason,
            "infrastructure": evidence.infrastructure,
            "command": evidence.command,
            "exit_code": evidence.exit_code,
            "duration_s": evidence.duration_s,
            "evidence": {**evidence.to_dict(), "warnings": warnings or []},
            "created_at": orch.clock(),
        },
    )


def approved_tests_snapshot(orch: Orchestrator, session: Session) -> dict[str, Any]:
    """What approving the tests locks: protected files' hashes and the collected test ids."""
    worktree = orch.project.root / session.context["worktree"]
    commit = session.context.get("head") or session.base_commit or "HEAD"
    hashes = snapshot_protected(worktree, commit, test_patterns(orch))
    red = session.context.get("red_run") or {}
    return {"commit": commit, "hashes": hashes, "test_ids": runnable_test_ids(red)}


def red_run_warnings(red: TestRunEvidence) -> list[str]:
    """What a reviewer should know about the red run before approving the tests."""
    warnings = []
    if red.infrastructure:
        warnings.append(f"the tests could not be run at all: {red.reason}")
    elif red.counts.get("total", 0) == 0 or "could not be collected" in red.reason:
        warnings.append(f"the tests don't load: {red.reason}; see the output")
    elif red.counts.get("passed", 0):
        warnings.append(
            f"{red.counts['passed']} of {red.counts['total']} tests already pass against the "
            "current code: they may not test anything new"
        )
    return warnings


def runnable_test_ids(evidence: Mapping[str, Any]) -> list[str]:
    """The ids of real test cases in a run, leaving out files that failed to import.

    When the red run could not import the tests (common in TDD: the module does
    not exist yet) there is nothing to pin at approval; the first run that does
    collect them pins the set instead (see `run_session_tests`).
    """
    broken = {
        f["id"]
        for f in evidence.get("failures", [])
        if f.get("outcome") == "error" and "::" not in f["id"]
    }
    return sorted(i for i in evidence.get("collected", []) if i not in broken)


def run_session_tests(
    orch: Orchestrator,
    ref: str,
    principal: Principal,
    *,
    progress: Progress | None = None,
) -> tuple[Session, dict[str, Any]]:
    """Run the approved tests on the session's newest commit and record the outcome."""
    session_id = orch.resolve_session_id(ref)
    session = orch.get(session_id)
    wf = orch.workflow_of(session)
    phase = wf.phase(session.phase)
    if phase.kind is not PhaseKind.SYSTEM or phase.automation != "run_tests":
        raise InvalidTransition(
            f"can't run_tests: session {session.short_id} is in {session.phase}; tests run "
            "after an implementation or fix is submitted. Allowed now: "
            + ", ".join(wf.allowed_actions(session.phase, paused=session.paused)),
            phase=session.phase,
            allowed_actions=wf.allowed_actions(session.phase, paused=session.paused),
        )
    if session.paused:
        raise InvalidTransition(
            f"session {session.short_id} is paused; a human must resume it", phase=session.phase
        )
    epoch = acquire_for_run(orch, session, principal)
    run_id = uuid.uuid4().hex
    approved = session.context.get("approved_tests") or {}
    commit = session.context["head"]
    if progress:
        progress(f"running `{orch.project.settings.test_command}` on commit {commit[:10]}")
    try:
        with keep_lease(orch, session_id, principal, epoch):
            evidence = execute(
                orch, run_id, commit, frozenset(approved.get("test_ids", [])) or None, progress
            )
    except BaseException:
        release(orch, session_id, epoch, "run_error")
        raise
    changed = _tampered(orch, session, commit, approved.get("hashes", {}))
    if changed and evidence.status == "passed":
        evidence = TestRunEvidence.from_dict(
            {
                **evidence.to_dict(),
                "status": "failed",
                "reason": f"approved test files changed: {', '.join(changed)}",
            }
        )
    if evidence.infrastructure:
        with orch.db.write() as conn:
            insert_run(orch, conn, run_id, session_id, "verify", commit, evidence)
        release(orch, session_id, epoch, "infrastructure_error")
        new = orch.record(
            session_id, "test_run_error", None, {"run_id": run_id, "reason": evidence.reason}
        )
        return new, {"run_id": run_id, **evidence.to_dict()}
    action = "tests_passed" if evidence.status == "passed" else "tests_failed"

    def build(current: Session) -> Command:
        if current.lease_epoch != epoch:
            raise Conflict(
                f"the run's lease on session {current.short_id} was taken over; "
                "its result is dropped",
                phase=current.phase,
            )
        summary = {
            "run_id": run_id,
            "status": evidence.status,
            "reason": evidence.reason,
            "counts": evidence.counts,
            "commit": commit,
        }
        context: dict[str, Any] = {"test_results": summary}
        if evidence.status != "passed":
            context["failures"] = evidence.to_dict()["failures"][:50]
        if approved and not approved.get("test_ids"):
            pinned = runnable_test_ids(evidence.to_dict())
            if pinned:
                context["approved_tests"] = {**approved, "test_ids": pinned}
        return Command(action, SYSTEM, payload=summary, commit=commit, context_patch=context)

    def store(conn: Connection, new: Session) -> None:
        insert_run(orch, conn, run_id, session_id, "verify", commit, evidence)

    new = orch._transition(session_id, build, extra=store)
    release(orch, session_id, epoch, "run_finished")
    return orch.get(session_id), {"run_id": run_id, **evidence.to_dict()}


def _tampered(
    orch: Orchestrator, session: Session, commit: str, approved: Mapping[str, str]
) -> list[str]:
    if not approved:
        return []
    worktree = orch.project.root / session.context["worktree"]
    return verify_snapshot(worktree, commit, approved, test_patterns(orch))
