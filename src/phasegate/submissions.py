"""Submissions and test runs: the agent's work goes into git, phasegate runs the tests.

A submission is validated before anything is written, committed to the
session's branch, and only then recorded as a transition. A test run happens
outside any transaction, under a runner lease whose fencing epoch is checked
when its result is recorded.
"""

from __future__ import annotations

import fcntl
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection

from phasegate.domain.principal import Principal
from phasegate.domain.session import SYSTEM, Command, Session, apply
from phasegate.domain.workflow import PhaseKind
from phasegate.errors import (
    ConfigError,
    Conflict,
    InvalidInput,
    InvalidTransition,
    PermissionDenied,
    SubmissionRefused,
)
from phasegate.store import queries as q
from phasegate.testrun import TestRunError, TestRunEvidence, run_tests
from phasegate.workspace import (
    DEFAULT_TEST_PATTERNS,
    FileChange,
    PathCheck,
    SubmissionLimits,
    TestPatterns,
    WorkspaceError,
    apply_submission,
    check_lock,
    check_tests_only,
    snapshot_protected,
    verify_snapshot,
)
from phasegate.workspace.git import Git

if TYPE_CHECKING:
    from phasegate.orchestrator import Orchestrator

SUBMIT_ACTIONS = {
    "tests": "submit_tests",
    "implementation": "submit_implementation",
    "fix": "fix_failures",
}
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


def limits(orch: Orchestrator) -> SubmissionLimits:
    lim = orch.project.settings.limits
    return SubmissionLimits(
        max_file_bytes=lim.max_file_bytes,
        max_total_bytes=lim.max_total_bytes,
        max_files=lim.max_files,
    )


@contextmanager
def session_lock(orch: Orchestrator, session_id: str) -> Iterator[None]:
    """One writer per worktree at a time, across processes on this machine."""
    lock_dir = orch.project.state_dir / "locks"
    lock_dir.mkdir(parents=True, exist_ok=True)
    with open(lock_dir / f"{session_id}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def submit(
    orch: Orchestrator,
    ref: str,
    kind: str,
    principal: Principal,
    files: Sequence[Mapping[str, Any]] | None = None,
    *,
    note: str = "",
    idempotency_key: str | None = None,
    lease_epoch: int | None = None,
    progress: Progress | None = None,
) -> Session:
    """Submit tests, an implementation or a fix; files, or the worktree's changes if None."""
    if kind not in SUBMIT_ACTIONS:
        raise InvalidInput(f"unknown submission kind {kind!r}; use tests, implementation or fix")
    if len(note) > 50_000:
        raise InvalidInput("the note is longer than 50,000 characters; shorten it")
    action = SUBMIT_ACTIONS[kind]
    session_id = orch.resolve_session_id(ref)
    request = {"op": action, "session": session_id, "files": list(files or []), "note": note}
    replay = orch.replayed(principal, idempotency_key, request)
    if replay is not None:
        return replay
    changes = _to_changes(files) if files is not None else None
    with session_lock(orch, session_id):
        session = orch.get(session_id)
        wf = orch.workflow_of(session)
        actor = principal.actor(wf.phase(session.phase).role)
        apply(wf, session, Command(action, actor), orch.clock())  # refuse early, write nothing
        _check_lease(orch, session, principal, lease_epoch)
        worktree = orch.project.root / session.context["worktree"]
        before = Git(worktree).text("rev-parse", "HEAD").strip()
        try:
            commit = apply_submission(
                worktree,
                changes,
                f"phasegate: {action} for {session.task_name}",
                {
                    "Phasegate-Session": session.id,
                    "Phasegate-Phase": session.phase,
                    "Phasegate-Actor": actor.describe(),
                },
                limits=limits(orch),
                check=_path_rule(kind, session, test_patterns(orch)),
            )
        except WorkspaceError as exc:
            raise SubmissionRefused(
                f"{exc} (session {session.short_id} stays in {session.phase})",
                phase=session.phase,
                allowed_actions=wf.allowed_actions(session.phase, paused=session.paused),
            ) from exc
        red: TestRunEvidence | None = None
        run_id = uuid.uuid4().hex
        if kind == "tests":
            if progress:
                progress("running the submitted tests once against the current code (red run)")
            red = _execute(orch, run_id, commit.sha, approved_ids=None)
        red_record = {**red.to_dict(), "warnings": red_run_warnings(red)} if red else None
        entry = {
            "commit": commit.sha,
            "paths": list(commit.paths),
            "deleted": list(commit.deleted),
            "note": note,
            "by": actor.describe(),
        }

        def build(current: Session) -> Command:
            # The lease may have expired and been claimed by another worker while we
            # committed or ran the red run: then this submission is stale.
            _check_lease(orch, current, principal, lease_epoch)
            context: dict[str, Any] = {"head": commit.sha}
            if kind == "tests":
                context["tests"] = entry
                context["red_run"] = red_record
            elif kind == "implementation":
                context["implementation"] = entry
            else:
                context["fixes"] = [*current.context.get("fixes", []), entry]
            payload: dict[str, Any] = {"paths": entry["paths"], "deleted": entry["deleted"]}
            if note:
                payload["note"] = note
            if red is not None:
                payload["red_run"] = {
                    "status": red.status,
                    "reason": red.reason,
                    "counts": red.counts,
                    "warnings": red_run_warnings(red),
                }
            return Command(action, actor, context_patch=context, payload=payload, commit=commit.sha)

        from phasegate.orchestrator import Idempotency

        idem = Idempotency(principal.name, idempotency_key, request) if idempotency_key else None

        def store_red(conn: Connection, new: Session) -> None:
            if red is not None:
                _insert_run(
                    orch,
                    conn,
                    run_id,
                    new.id,
                    "red",
                    commit.sha,
                    red,
                    warnings=red_run_warnings(red),
                )

        try:
            return orch._transition(
                session_id,
                build,
                expected_version=session.version,
                idempotency=idem,
                extra=store_red,
            )
        except Exception:
            Git(worktree).run("reset", "--hard", before)  # the commit must not outlive a refusal
            raise


def _path_rule(kind: str, session: Session, patterns: TestPatterns) -> PathCheck:
    """Tests may only touch test paths; after approval nothing may touch them.

    The workspace runs the rule on the validated paths before writing and
    again on the staged paths just before committing, so an agent editing the
    worktree in between can't slip a change past it.
    """
    if kind == "tests":
        return partial(check_tests_only, patterns=patterns)
    approved = (session.context.get("approved_tests") or {}).get("hashes", {})
    return partial(check_lock, approved=approved, patterns=patterns)


def _to_changes(files: Sequence[Mapping[str, Any]]) -> list[FileChange]:
    changes = []
    for i, item in enumerate(files):
        if not isinstance(item, Mapping) or "path" not in item:
            raise InvalidInput(f"file #{i + 1} needs a 'path' and a 'content' (null deletes it)")
        path, content = item["path"], item.get("content")
        if not isinstance(path, str) or (content is not None and not isinstance(content, str)):
            raise InvalidInput(
                f"file #{i + 1}: 'path' must be a string and 'content' a string or null"
            )
        changes.append(FileChange(path, content))
    return changes


def _check_lease(
    orch: Orchestrator, session: Session, principal: Principal, epoch: int | None
) -> None:
    """While a lease is live only its holder may submit, and only under the current epoch."""
    now = orch.clock()
    live = session.lease_owner and session.lease_expires_at and session.lease_expires_at > now
    if live and session.lease_owner != principal.name:
        raise PermissionDenied(
            f"session {session.short_id} is claimed by {session.lease_owner} until "
            f"{session.lease_expires_at:%H:%M:%S} UTC; wait for the lease to end or claim another "
            "session (claim_next)",
            phase=session.phase,
        )
    if epoch is not None and epoch != session.lease_epoch:
        raise Conflict(
            f"your lease on session {session.short_id} (epoch {epoch}) was taken over "
            f"(epoch {session.lease_epoch}); drop this work and claim again",
            phase=session.phase,
        )


def _execute(
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


def _insert_run(
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
    from phasegate.leases import acquire_for_run, keep_lease, release

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
            evidence = _execute(
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
            _insert_run(orch, conn, run_id, session_id, "verify", commit, evidence)
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
        _insert_run(orch, conn, run_id, session_id, "verify", commit, evidence)

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
