"""The reviewer's work: an analysis of failed runs for the coder, and findings at a gate.

A reviewer writes text, never code: its analysis goes into the session's
context (`reviews`, which the coder's prompt and `get_session_status` show)
and its findings at a gate (`pre_review`) are shown to the human who decides.
A reviewer never decides a gate: `decisions.decide` refuses every agent.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

from phasegate.decisions import count_this_visit
from phasegate.domain.principal import Principal
from phasegate.domain.session import Command, Session, apply, describe_wait
from phasegate.domain.workflow import REVIEWER, PhaseKind
from phasegate.errors import (
    Conflict,
    InvalidInput,
    InvalidTransition,
    PermissionDenied,
    SubmissionRefused,
)
from phasegate.idempotency import Idempotency
from phasegate.kernel import Kernel
from phasegate.submissions import check_lease, lock_wait_s, record_refusal, session_lock
from phasegate.workspace import FileChange, WorkspaceError, changed_paths

VERDICTS = ("approve", "reject")
MAX_FINDINGS = 50
MAX_TEXT = 20_000  # a pre-review's summary, in characters
MAX_COMMENT = 2_000  # one finding's comment
MAX_PATH = 1_024  # one finding's path
MAX_PRE_REVIEWS_PER_GATE = 20  # pre-reviews a reviewer may attach at one visit of a gate
REVIEWS_KEPT = 10  # the newest analyses in the context; every one is in the timeline


def submit_review(
    kernel: Kernel,
    ref: str,
    principal: Principal,
    files: Sequence[Mapping[str, Any]] | None,
    *,
    note: str,
    idempotency_key: str | None = None,
    lease_epoch: int | None = None,
) -> Session:
    """The reviewer's analysis of the failures, in `note`; a review changing files is refused."""
    session_id = kernel.resolve_session_id(ref)
    request = {"op": "submit_review", "session": session_id, "note": note}
    replay = kernel.replayed(principal, idempotency_key, request)
    if replay is not None:
        return replay
    with session_lock(
        kernel, session_id, wait_s=lock_wait_s(kernel, kernel.get(session_id), principal)
    ):
        session = kernel.get(session_id)
        wf = kernel.workflow_of(session)
        actor = principal.actor(wf.phase(session.phase).role)
        apply(wf, session, Command("submit_review", actor), kernel.clock())  # refuse early
        worktree = kernel.project.root / session.context["worktree"]
        changes = [FileChange(str(f.get("path", "")), None) for f in files or []]
        refused = partial(
            record_refusal, kernel, session, principal, "submit_review", changes or None, worktree
        )
        try:
            check_lease(kernel, session, principal, lease_epoch)
        except (PermissionDenied, Conflict) as exc:
            refused("lease", exc.message)
            raise
        # Whatever `files` says (None, [] or a list), the worktree must be as the last
        # submission left it: an edit left there would ride along with the coder's next fix.
        given = [c.path for c in changes]
        left = [p for p in _worktree_changes(kernel, session, worktree) if p not in given]
        if given or left:
            reason = (
                f"a review is text, not code: it changes no files ({len(given)} given, "
                f"{len(left)} left uncommitted in the worktree); undo your edits, put your "
                "analysis in `note` and submit no files"
            )
            touched = [FileChange(p, None) for p in [*given, *left]]
            cause = "review_with_files"
            record_refusal(
                kernel, session, principal, "submit_review", touched, worktree, cause, reason
            )
            raise SubmissionRefused(
                f"{reason} (session {session.short_id} stays in {session.phase})",
                phase=session.phase,
                allowed_actions=wf.allowed_actions(session.phase, paused=session.paused),
            )
        if not note.strip():
            raise InvalidInput(
                "a review needs your analysis of the failures in `note` (what fails, why, "
                "and what the coder should change)"
            )

        def build(current: Session) -> Command:
            check_lease(kernel, current, principal, lease_epoch)
            entry = {
                "phase": current.phase,
                "by": principal.name,
                "comment": note,
                "fix_attempt": current.fix_attempts,
            }
            reviews = [*current.context.get("reviews", []), entry][-REVIEWS_KEPT:]
            return Command(
                "submit_review", actor, context_patch={"reviews": reviews}, payload={"note": note}
            )

        idem = Idempotency.of(principal, idempotency_key, request)
        return kernel.transition(
            session_id, build, expected_version=session.version, idempotency=idem
        )


def _worktree_changes(kernel: Kernel, session: Session, worktree: Path) -> list[str]:
    """The worktree's uncommitted changes; a worktree that can't be read refuses the review
    (it can't be shown unchanged), leaving it as it is for a human to look at."""
    try:
        return changed_paths(worktree)
    except WorkspaceError as exc:
        wf = kernel.workflow_of(session)
        raise Conflict(
            f"can't check that the worktree of session {session.short_id} is unchanged ({exc}); "
            "try again, or ask a human to look at the worktree",
            phase=session.phase,
            allowed_actions=wf.allowed_actions(session.phase, paused=session.paused),
        ) from exc


def pre_review(
    kernel: Kernel,
    ref: str,
    principal: Principal,
    verdict: str,
    summary: str,
    findings: Sequence[Mapping[str, Any]],
) -> Session:
    """Attach a reviewer agent's findings and suggested verdict at a gate, for the human."""
    if principal.is_human or REVIEWER not in principal.roles:
        raise PermissionDenied(
            f"{principal.name} is not a reviewer agent; a pre-review is attached by an agent with "
            "the reviewer role (a human decides with approve or reject instead)"
        )
    if verdict not in VERDICTS:
        raise InvalidInput(f"verdict {verdict!r} is not approve or reject; suggest one of them")
    if not isinstance(summary, str) or len(summary) > MAX_TEXT:
        raise InvalidInput(
            f"the summary must be text of at most {MAX_TEXT:,} characters; shorten it"
        )
    checked = _checked_findings(findings)
    reviewer = replace(principal, roles=(REVIEWER,))  # acts as reviewer, whatever else it is

    def at_a_gate(session: Session) -> None:
        if count_this_visit(session, "pre_review") >= MAX_PRE_REVIEWS_PER_GATE:
            raise InvalidInput(
                f"you already attached {MAX_PRE_REVIEWS_PER_GATE} pre-reviews at this gate; the "
                "human sees the newest: call wait_for_decision"
            )
        wf = kernel.workflow_of(session)
        if not wf.pre_review:
            raise InvalidTransition(
                f"pre-review is off in workflow {wf.name}; a human turns it on with "
                f"pre_review = true in [workflows.{wf.name}] of phasegate.toml",
                phase=session.phase,
            )
        if wf.phase(session.phase).kind is not PhaseKind.HUMAN or session.paused:
            raise InvalidTransition(
                f"can't pre-review: session {session.short_id} is in {session.phase}, "
                f"{describe_wait(wf, session)}; findings are attached at a gate "
                f"({', '.join(wf.gates())})",
                phase=session.phase,
            )

    def attached(session: Session) -> dict[str, Any]:
        return {
            "pre_review": {
                "phase": session.phase,
                "entered": session.phase_entered_at.isoformat(),
                "by": principal.name,
                "verdict": verdict,
                "summary": summary,
                "findings": checked,
                "count": count_this_visit(session, "pre_review") + 1,
            }
        }

    return kernel.record(
        ref,
        "pre_review",
        reviewer,
        {"verdict": verdict, "summary": summary, "findings": checked},
        context_patch=attached,
        check=at_a_gate,
    )


def gate_pre_review(session: Session) -> dict[str, Any] | None:
    """The pre-review attached at the gate the session waits at now; None if none is."""
    found = session.context.get("pre_review")
    if not found or found.get("phase") != session.phase:
        return None
    if found.get("entered") != session.phase_entered_at.isoformat():
        return None  # attached at an earlier visit of this gate: stale
    return dict(found)


def _checked_findings(findings: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    if not isinstance(findings, Sequence) or isinstance(findings, str):
        raise InvalidInput("findings must be a list of {path, line, comment}")
    if len(findings) > MAX_FINDINGS:
        raise InvalidInput(f"{len(findings)} findings; attach at most {MAX_FINDINGS}")
    checked = []
    for i, item in enumerate(findings, 1):
        if not isinstance(item, Mapping):
            raise InvalidInput(f"finding #{i} must be an object with a path, a line and a comment")
        path, line, comment = item.get("path"), item.get("line"), item.get("comment")
        if not isinstance(path, str) or not path.strip() or len(path) > MAX_PATH:
            raise InvalidInput(
                f"finding #{i} needs a 'path' (the file it is about), 1 to {MAX_PATH:,} characters"
            )
        if type(line) is not int or line < 1:
            raise InvalidInput(f"finding #{i} needs a 'line' (a number from 1)")
        if not isinstance(comment, str) or not comment.strip() or len(comment) > MAX_COMMENT:
            raise InvalidInput(
                f"finding #{i} needs a 'comment' of 1 to {MAX_COMMENT:,} characters; shorten it"
            )
        checked.append({"path": path, "line": line, "comment": comment})
    return checked
