"""Submissions and test runs: the agent's work goes into git, phasegate runs the tests.

A submission is validated before anything is written, committed to the
session's branch, and only then recorded as a transition. A test run happens
outside any transaction, under a runner lease whose fencing epoch is checked
when its result is recorded.
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import IO, Any

from sqlalchemy import Connection

from phasegate import verification
from phasegate.config import Settings
from phasegate.domain.principal import Principal
from phasegate.domain.session import Command, Session, apply
from phasegate.domain.workflow import SUBMIT_ACTIONS
from phasegate.errors import (
    ConfigError,
    Conflict,
    InvalidInput,
    PermissionDenied,
    SubmissionRefused,
)
from phasegate.idempotency import Idempotency
from phasegate.kernel import Kernel
from phasegate.testrun import TestRunEvidence
from phasegate.workspace import (
    FileChange,
    LockedTestViolation,
    PathCheck,
    SubmissionCommit,
    SubmissionLimits,
    SubmissionRejected,
    TestPatterns,
    WorkspaceError,
    apply_submission,
    changed_paths,
    check_lock,
    check_tests_only,
    clear_stale_index_lock,
    read_file_at,
)
from phasegate.workspace.designlock import (
    LockedDesignViolation,
    check_design_lock,
    check_design_only,
    design_round_diffs,
)
from phasegate.workspace.errors import printable_path
from phasegate.workspace.git import Git

log = logging.getLogger(__name__)

Progress = Callable[[str], None]


def limits(settings: Settings) -> SubmissionLimits:
    lim = settings.limits
    return SubmissionLimits(
        max_file_bytes=lim.max_file_bytes,
        max_total_bytes=lim.max_total_bytes,
        max_files=lim.max_files,
    )


#: The longest a submission waits for another process's change to the same worktree.
SESSION_LOCK_WAIT_S = 10.0
_LOCK_POLL_S = 0.05


@contextmanager
def session_lock(
    kernel: Kernel, session_id: str, *, wait_s: float = SESSION_LOCK_WAIT_S
) -> Iterator[None]:
    """One writer per worktree at a time across this machine's processes; waits at most `wait_s`.

    A holder that is stopped (SIGSTOP, a debugger) keeps an flock for as long
    as it lives, so the lock is polled until a deadline instead of waited for:
    then a Conflict names the holder's pid, which the lock file records.
    """
    lock_dir = kernel.project.state_dir / "locks"
    lock_dir.mkdir(parents=True, exist_ok=True)
    # "a+", not "w": opening must not wipe the holder's pid before we hold the lock.
    with open(lock_dir / f"{session_id}.lock", "a+") as handle:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise _lock_busy(session_id, handle, wait_s) from None
                time.sleep(_LOCK_POLL_S)
        try:
            handle.truncate(0)
            handle.write(str(os.getpid()))
            handle.flush()
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _lock_busy(session_id: str, handle: IO[str], wait_s: float) -> Conflict:
    handle.seek(0)
    pid = handle.read(20).strip()
    holder = f"another process (pid {pid})" if pid.isdigit() else "another process"
    return Conflict(
        f"session {session_id[:8]} is being changed by {holder} for more than {wait_s:g} s; "
        "try again in a moment, or look for a stuck worker"
    )


def lock_wait_s(kernel: Kernel, session: Session, principal: Principal) -> float:
    """How long a submission waits for the worktree: never past the end of the caller's lease."""
    if session.lease_owner != principal.name or session.lease_expires_at is None:
        return SESSION_LOCK_WAIT_S
    left = (session.lease_expires_at - kernel.clock()).total_seconds()
    return max(0.5, min(SESSION_LOCK_WAIT_S, left))


def submit(
    kernel: Kernel,
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
    """Submit a design, tests, an implementation or a fix; files, or the worktree's changes
    if None. (A review is text, not files: `reviews.submit_review`.)

    The worktree lock is held twice, briefly: while the files are written and
    committed, and while the transition records that commit. The red run
    between them holds no lock, so a stopped or slow submitter blocks nobody
    for longer than a commit. Whoever takes the lock in between may undo our
    unrecorded commit (`_recover_interrupted_submission`); the second hold
    sees HEAD moved and refuses, and a commit is only ever reset while it is
    still HEAD, so nobody else's commit is undone.
    """
    if kind not in SUBMIT_ACTIONS:
        raise InvalidInput(
            f"unknown submission kind {kind!r}; use design, tests, implementation, fix or review"
        )
    if len(note) > 50_000:
        raise InvalidInput("the note is longer than 50,000 characters; shorten it")
    if kind == "review":
        raise InvalidInput("a review is submitted with reviews.submit_review, not as files")
    action = SUBMIT_ACTIONS[kind]
    session_id = kernel.resolve_session_id(ref)
    request = {"op": action, "session": session_id, "files": list(files or []), "note": note}
    replay = kernel.replayed(principal, idempotency_key, request)
    if replay is not None:
        return replay
    changes = _to_changes(files) if files is not None else None
    wait_s = lock_wait_s(kernel, kernel.get(session_id), principal)
    with session_lock(kernel, session_id, wait_s=wait_s):
        session = kernel.get(session_id)
        wf = kernel.workflow_of(session)
        actor = principal.actor(wf.phase(session.phase).role)
        apply(wf, session, Command(action, actor), kernel.clock())  # refuse early, write nothing
        worktree = kernel.project.root / session.context["worktree"]
        refused = partial(record_refusal, kernel, session, principal, action, changes, worktree)
        try:
            check_lease(kernel, session, principal, lease_epoch)
        except (PermissionDenied, Conflict) as exc:
            refused("lease", exc.message)
            raise
        settings = kernel.settings_of(session)
        before = _recover_interrupted_submission(worktree, session)
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
                limits=limits(settings),
                check=_path_rule(kind, session, verification.test_patterns(settings)),
            )
            design = _design_text(worktree, session, commit) if kind == "design" else None
        except (WorkspaceError, OSError, DesignRefused) as exc:
            if isinstance(exc, DesignRefused):
                Git(worktree).run("reset", "--quiet", before, "--")
            refused(_cause(exc), str(exc))
            raise SubmissionRefused(
                f"{exc} (session {session.short_id} stays in {session.phase})",
                phase=session.phase,
                allowed_actions=wf.allowed_actions(session.phase, paused=session.paused),
            ) from exc

    def undo() -> None:
        """Reset our commit, its files left uncommitted, unless someone else moved HEAD since.

        If the worktree stays locked, the commit stays too: it is recorded
        nowhere, so the next submission's recovery undoes it.
        """
        try:
            with session_lock(kernel, session_id, wait_s=wait_s):
                if Git(worktree).text("rev-parse", "HEAD").strip() == commit.sha:
                    Git(worktree).run("reset", "--quiet", before, "--")
        except Conflict as exc:
            log.warning("session %s: %s; the next submission undoes the commit", session_id, exc)

    red: TestRunEvidence | None = None
    run_id = uuid.uuid4().hex
    if kind == "tests":
        if progress:
            progress("running the submitted tests once against the current code (red run)")
        try:
            red = verification.execute(
                kernel, settings, run_id, commit.sha, None, base=session.base_commit
            )
        except ConfigError as exc:  # the tests can't run here at all: a human's job
            undo()
            return _setup_to_human(kernel, session, exc.message, None, run_id)
        except BaseException:
            undo()  # no run, no submission
            raise
        if red.infrastructure or red.setup_error:
            undo()  # the files stay, uncommitted
            return _setup_to_human(kernel, session, red.reason, red, run_id)
    red_record = (
        verification.run_record(run_id, red, verification.red_run_warnings(red)) if red else None
    )
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
        check_lease(kernel, current, principal, lease_epoch)
        context: dict[str, Any] = {"head": commit.sha}
        if kind == "tests":
            context["tests"] = entry
            context["red_run"] = red_record
        elif kind == "implementation":
            context["implementation"] = entry
        elif kind == "design":
            context["design"] = design
            if "request" not in current.context:  # the design loaded at the start was the request
                context["request"] = current.context.get("design", "")
            context["designs"] = [*current.context.get("designs", []), entry]
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
                "warnings": verification.red_run_warnings(red),
            }
        return Command(action, actor, context_patch=context, payload=payload, commit=commit.sha)

    idem = Idempotency.of(principal, idempotency_key, request)

    def store_red(conn: Connection, new: Session) -> None:
        if red is not None:
            verification.insert_run(
                kernel,
                conn,
                run_id,
                new.id,
                "red",
                commit.sha,
                red,
                warnings=verification.red_run_warnings(red),
            )

    with session_lock(kernel, session_id, wait_s=wait_s):
        try:
            if Git(worktree).text("rev-parse", "HEAD").strip() != commit.sha:
                raise Conflict(
                    f"session {session.short_id}'s worktree was changed by another submission "
                    "while this one's tests ran; reload the session and submit again",
                    phase=session.phase,
                )
            return kernel.transition(
                session_id,
                build,
                expected_version=session.version,
                idempotency=idem,
                extra=store_red,
            )
        except BaseException as exc:
            # The commit must not outlive a refusal; its files stay as uncommitted changes.
            if Git(worktree).text("rev-parse", "HEAD").strip() == commit.sha:
                Git(worktree).run("reset", "--quiet", before, "--")
            if isinstance(exc, StaleLease):
                refused("lease", exc.message)
            raise


def _setup_to_human(
    kernel: Kernel,
    session: Session,
    reason: str,
    red: TestRunEvidence | None,
    run_id: str,
) -> Session:
    """The submitted tests could not be run as configured: a human fixes the setup.

    The tests are not accepted (their files stay in the worktree, uncommitted),
    so after `retry` the tester submits them again and they get a real red run.
    """
    setting = verification.setting_to_fix(red) if red else verification.setting_for(reason)
    run = None
    if red is not None:
        with kernel.db.write() as conn:
            verification.insert_run(kernel, conn, run_id, session.id, "red", red.commit, red)
        run = verification.run_record(run_id, red, verification.run_warnings(red))
    return verification.to_human(kernel, session, "red_run", reason, setting, run=run)


class StaleLease(Conflict):
    """A submission made under a lease that was taken over: recorded as a refusal."""


# Refusals recorded per session and cause: a flood stops being stored one by one there. The
# causes a reviewer most needs (a locked test touched, a lease misused) get a higher bound.
REFUSALS_RECORDED = {"locked_test": 1000, "locked_design": 1000, "lease": 1000}
OTHER_REFUSALS_RECORDED = 200
REFUSALS_SHOWN = 5


def _cause(exc: BaseException) -> str:
    if isinstance(exc, LockedDesignViolation):
        return "locked_design"
    if isinstance(exc, LockedTestViolation):
        return "locked_test"
    return "forbidden_path" if isinstance(exc, SubmissionRejected) else "refused"


def record_refusal(
    kernel: Kernel,
    session: Session,
    principal: Principal,
    action: str,
    changes: Sequence[FileChange] | None,
    worktree: Path,
    cause: str,
    reason: str,
) -> None:
    """Put a refused submission on the record: what was attempted (paths only) and why.

    An append-only event in the session's audit chain, and a count in the
    context that every gate shows. Recording never hides the refusal itself:
    if it fails, the agent still gets its error.
    """
    try:
        paths = [c.path for c in changes] if changes is not None else changed_paths(worktree)
    except WorkspaceError:
        paths = []
    entry = {
        "submission": action,
        "cause": cause,
        "reason": reason[:1000],
        "paths": [printable_path(p) for p in paths[:50]],
        "more_paths": max(0, len(paths) - 50),
        "phase": session.phase,
        "by": principal.name,
    }

    bound = REFUSALS_RECORDED.get(cause, OTHER_REFUSALS_RECORDED)
    so_far = ((session.context.get("refusals") or {}).get("by_cause") or {}).get(cause, 0)
    if so_far >= bound:
        log.warning("session %s: %s refusal over %d, not recorded", session.short_id, cause, bound)
        return
    if so_far + 1 == bound:
        entry["last_recorded"] = f"later {cause} refusals of this session are not recorded"

    def counted(current: Session) -> dict[str, Any]:
        before = current.context.get("refusals") or {"count": 0, "recent": []}
        by_cause = dict(before.get("by_cause") or {})
        by_cause[cause] = by_cause.get(cause, 0) + 1
        recent = [*before["recent"], entry][-REFUSALS_SHOWN:]
        return {"refusals": {"count": before["count"] + 1, "by_cause": by_cause, "recent": recent}}

    try:
        kernel.record(session.id, "submission_refused", principal, entry, context_patch=counted)
    except Exception:  # the refusal stands either way
        log.exception("session %s: the refusal could not be recorded", session.short_id)


def _recover_interrupted_submission(worktree: Path, session: Session) -> str:
    """Undo what a submission killed between its git commit and its transition left behind.

    The session records the newest commit it accepted; a commit beyond it on the
    branch was never acknowledged. HEAD moves back to the recorded commit and the
    orphan's files stay in the worktree as uncommitted changes, so a retry sees
    them as a change again. Returns the recorded commit.
    """
    if clear_stale_index_lock(worktree):
        log.warning("removed a stale git index.lock in %s (a killed commit?)", worktree)
    git = Git(worktree)
    recorded = str(session.context.get("head") or session.base_commit)
    if git.text("rev-parse", "HEAD").strip() != recorded:
        log.warning("session %s: undoing a commit no transition recorded", session.short_id)
        git.run("reset", "--quiet", recorded, "--")
    return recorded


def _path_rule(kind: str, session: Session, patterns: TestPatterns) -> PathCheck:
    """What each kind may touch: a design only the design document, tests only test paths;
    once approved, nothing may touch the design or the tests.

    The workspace runs the rule on the validated paths before writing and
    again on the staged paths just before committing, so an agent editing the
    worktree in between can't slip a change past it.
    """
    design = (session.context.get("approved_design") or {}).get("hashes", {})
    if kind == "design":
        rule: PathCheck = partial(check_design_only, design_path=_design_path(session))
    elif kind == "tests":
        rule = partial(check_tests_only, patterns=patterns)
    else:
        approved = (session.context.get("approved_tests") or {}).get("hashes", {})
        rule = partial(check_lock, approved=approved, patterns=patterns)

    def check(paths: Sequence[str]) -> None:
        check_design_lock(paths, design)  # first: touching the design is its own refusal
        rule(paths)

    return check


class DesignRefused(Exception):
    """A design submission whose document is missing or empty after the commit."""


def _design_path(session: Session) -> str:
    return str(session.context.get("design_path") or "design.md")


def _design_text(worktree: Path, session: Session, commit: SubmissionCommit) -> str:
    """The submitted design document's text; DesignRefused if it is gone or empty."""
    path = _design_path(session)
    try:
        text = read_file_at(worktree, commit.sha, path)
    except WorkspaceError:
        raise DesignRefused(
            f"the design submission leaves no readable {path}; submit the design document "
            "as Markdown text"
        ) from None
    if not text.strip():
        raise DesignRefused(f"the design document {path} is empty; write the design in it")
    return text


def design_rounds(kernel: Kernel, session: Session) -> list[dict[str, Any]]:
    """Each submitted design round with its diff from the round before (the first: from base).

    For the dashboard: `[{commit, by, note, diff}]`, oldest first.
    """
    rounds = list(session.context.get("designs") or [])
    if not rounds or not session.base_commit:
        return []
    worktree = kernel.project.root / session.context["worktree"]
    diffs = design_round_diffs(
        worktree, session.base_commit, [r["commit"] for r in rounds], _design_path(session)
    )
    return [
        {"commit": r["commit"], "by": r.get("by", ""), "note": r.get("note", ""), "diff": d}
        for r, d in zip(rounds, diffs, strict=True)
    ]


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


def check_lease(kernel: Kernel, session: Session, principal: Principal, epoch: int | None) -> None:
    """While a lease is live only its holder may submit, and only under the current epoch."""
    now = kernel.clock()
    live = session.lease_owner and session.lease_expires_at and session.lease_expires_at > now
    if live and session.lease_owner != principal.name:
        raise PermissionDenied(
            f"session {session.short_id} is claimed by {session.lease_owner} until "
            f"{session.lease_expires_at:%H:%M:%S} UTC; wait for the lease to end or claim another "
            "session (claim_next)",
            phase=session.phase,
        )
    if epoch is not None and epoch != session.lease_epoch:
        raise StaleLease(
            f"your lease on session {session.short_id} (epoch {epoch}) was taken over "
            f"(epoch {session.lease_epoch}); drop this work and claim again",
            phase=session.phase,
        )
