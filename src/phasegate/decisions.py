"""Human decisions at gates, and an agent's request for one.

Only a human principal decides; the check is here, in the use case, not only
in which interfaces offer a decision.
"""

from __future__ import annotations

from typing import Any

from phasegate import verification
from phasegate.config import session_config
from phasegate.domain.principal import Principal
from phasegate.domain.session import Actor, Command, Session, describe_wait
from phasegate.domain.workflow import PhaseKind
from phasegate.errors import Conflict, InvalidInput, InvalidTransition, PermissionDenied
from phasegate.idempotency import Idempotency
from phasegate.kernel import Kernel
from phasegate.workspace import WorkspaceError
from phasegate.workspace.designlock import snapshot_design

GATE_ACTIONS = ("approve", "reject", "retry", "rerun_tests", "reopen_tests")
HUMAN_ACTIONS = (*GATE_ACTIONS, "pause", "resume", "cancel")


def decide(
    kernel: Kernel,
    ref: str,
    action: str,
    principal: Principal,
    *,
    comment: str = "",
    expected_version: int | None = None,
    idempotency_key: str | None = None,
) -> Session:
    """A human action: approve, reject, retry, reopen_tests, pause, resume or cancel."""
    if action not in HUMAN_ACTIONS:
        raise InvalidInput(f"unknown decision {action!r}; use one of {', '.join(HUMAN_ACTIONS)}")
    if len(comment) > 20_000:
        raise InvalidInput("the comment is longer than 20,000 characters; shorten it")
    session_id = kernel.resolve_session_id(ref)
    request = {"op": "decide", "session": session_id, "action": action, "comment": comment}
    idem = Idempotency.of(principal, idempotency_key, request)
    actor = principal.actor()
    if not principal.is_human:
        # Refused before anything else so an agent learns nothing by probing.
        session = kernel.get(session_id)
        raise PermissionDenied(
            f"can't {action}: only a human may {action} a session, and "
            f"{actor.describe()} is an agent; ask a human to review it in the "
            "dashboard or with the phasegate CLI",
            phase=session.phase,
        )
    patch = _lock_snapshots(kernel, session_id, action)

    def build(current: Session) -> Command:
        wf = kernel.workflow_of(current)
        problem = current.context.get("setup_error")
        if problem and _resumes_setup(action, problem, comment):
            return _resume_after_setup(kernel, current, problem, actor, comment)
        context: dict[str, Any] = {}
        if current.context.get("setup_error") and action not in ("pause", "resume"):
            context["setup_error"] = None  # the human decided otherwise; the error is history
        if action in ("reject", "retry"):
            key = "guidance" if action == "retry" else "feedback"
            entries = [
                *current.context.get(key, []),
                {"phase": current.phase, "by": principal.name, "comment": comment},
            ]
            context[key] = entries
        locks = wf.locks_at(current.phase) if action == "approve" else ()
        if locks:
            # The snapshots were taken outside this transaction: never lock a stale artifact.
            head = current.context.get("head") or current.base_commit or "HEAD"
            if (
                patch is None
                or set(patch) != set(locks)
                or any(snap.get("commit") != head for snap in patch.values())
            ):
                raise Conflict(
                    f"the {' and '.join(locks)} of session {current.short_id} changed while you "
                    "were approving them; review the new submission and approve again",
                    phase=current.phase,
                )
            context.update({LOCK_KEYS[artifact]: snap for artifact, snap in patch.items()})
        transition = wf.transition(action, current.phase)
        redo = wf.produced_in(transition.target) if transition else None
        if redo in LOCK_KEYS:  # back to writing it (reopen_tests): its lock is lifted
            context[LOCK_KEYS[redo]] = None
        return Command(
            action,
            actor,
            comment=comment,
            context_patch=context,
            payload={"gate": current.phase} if action in GATE_ACTIONS else {},
        )

    return kernel.transition(session_id, build, expected_version=expected_version, idempotency=idem)


#: Where the context keeps what a gate locked, per artifact.
LOCK_KEYS = {"tests": "approved_tests", "design": "approved_design"}


def _lock_snapshots(kernel: Kernel, session_id: str, action: str) -> dict[str, Any] | None:
    """What approving the gate the session waits at locks, per artifact; None if nothing.

    Tests: the protected files' hashes and the test ids. The design: its document's hash.
    """
    if action != "approve":
        return None
    session = kernel.get(session_id)
    locks = kernel.workflow_of(session).locks_at(session.phase)
    if not locks:
        return None
    snapshots: dict[str, Any] = {}
    if "tests" in locks:
        snapshots["tests"] = verification.approved_tests_snapshot(kernel, session)
    if "design" in locks:
        snapshots["design"] = _design_snapshot(kernel, session)
    return snapshots


def _design_snapshot(kernel: Kernel, session: Session) -> dict[str, Any]:
    """The design document's hash at the session's newest commit."""
    worktree = kernel.project.root / session.context["worktree"]
    commit = session.context.get("head") or session.base_commit or "HEAD"
    path = str(session.context.get("design_path") or "")
    try:
        hashes = snapshot_design(worktree, commit, path)
    except WorkspaceError as exc:
        raise Conflict(
            f"the design of session {session.short_id} can't be read ({exc}); "
            "reject it so the designer submits it again",
            phase=session.phase,
        ) from exc
    return {"commit": commit, "hashes": hashes}


def request_approval(kernel: Kernel, ref: str, principal: Principal, message: str) -> Session:
    """Attach the agent's message for the reviewer at a gate, and tell the humans."""
    if not message.strip() or len(message) > 20_000:
        raise InvalidInput("the message for the reviewer must be 1 to 20,000 characters")

    def at_a_gate(session: Session) -> None:
        if count_this_visit(session, "approval_request") >= MAX_REQUESTS_PER_GATE:
            raise InvalidInput(
                f"you already sent {MAX_REQUESTS_PER_GATE} messages at this gate; the reviewer "
                "has them: call wait_for_decision"
            )
        wf = kernel.workflow_of(session)
        if wf.phase(session.phase).kind is not PhaseKind.HUMAN:
            raise InvalidTransition(
                f"can't request_approval: session {session.short_id} is in {session.phase}, "
                f"{describe_wait(wf, session)}; approval is requested at a gate "
                f"({', '.join(wf.gates())})",
                phase=session.phase,
                allowed_actions=wf.allowed_actions(session.phase, paused=session.paused),
            )

    def request(session: Session) -> dict[str, Any]:
        return {
            "phase": session.phase,
            "entered": session.phase_entered_at.isoformat(),
            "count": count_this_visit(session, "approval_request") + 1,
            "by": principal.name,
            "message": message,
        }

    return kernel.record(
        ref,
        "request_approval",
        principal,
        {"message": message},
        context_patch=lambda current: {"approval_request": request(current)},
        check=at_a_gate,
    )


def _resumes_setup(action: str, problem: dict[str, Any], comment: str) -> bool:
    """Whether a decision after a setup error runs again under today's configuration.

    `rerun_tests`, or `retry` without a comment, does. `retry` with guidance
    after a verify run means the human thinks the code is at fault: it goes to
    the coder like any retry. After a red run there is no code yet: the tester
    submits again either way.
    """
    if action == "rerun_tests" or (action == "retry" and problem.get("at") == "red_run"):
        return True
    return action == "retry" and not comment.strip()


def _resume_after_setup(
    kernel: Kernel, current: Session, problem: dict[str, Any], actor: Actor, comment: str
) -> Command:
    """After a setup error: take today's configuration and run (or resubmit) again.

    The session then runs under the fixed configuration (its hash is in the
    event); the tests run again at once, or, if the red run was the one that
    could not run, the tester submits them again (with the comment as feedback).
    """
    wf = kernel.project.workflow(current.workflow)
    config = session_config(kernel.project.settings, wf.max_fix_attempts)
    again = "rerun_tests" if problem.get("at") == "verify" else "reopen_tests"
    context: dict[str, Any] = {"setup_error": None, "config": config}
    if again == "reopen_tests":
        context["approved_tests"] = None
        if comment.strip():
            entry = {"phase": current.phase, "by": actor.id, "comment": comment}
            context["feedback"] = [*current.context.get("feedback", []), entry]
    payload = {
        "gate": current.phase,
        "setup_error": problem.get("reason"),
        "config": config["hash"],
    }
    return Command(
        again,
        actor,
        comment=comment,
        context_patch=context,
        payload=payload,
        max_fix_attempts=wf.max_fix_attempts,
    )


MAX_REQUESTS_PER_GATE = 20  # messages an agent may leave at one visit of a gate


def count_this_visit(session: Session, key: str) -> int:
    """How many times the annotation kept in `context[key]` (an agent's request for approval,
    a pre-review) was attached since the session entered the gate it waits at. The entry
    carries its phase, when that phase was entered, and a running count (1 if it has none)."""
    last = session.context.get(key) or {}
    same_visit = (
        last.get("phase") == session.phase
        and last.get("entered") == session.phase_entered_at.isoformat()
    )
    return int(last.get("count", 1)) if same_visit else 0
