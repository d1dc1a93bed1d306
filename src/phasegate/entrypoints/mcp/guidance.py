"""What an agent may do now and what it should do next, derived from the workflow table.

The workflow's own `allowed_actions` names human and system actions too
(approve, pause…); an agent needs the MCP tools it can call, so this module
translates a session's phase into tool names and one sentence of advice.
"""

from __future__ import annotations

from phasegate.domain.session import Session, SessionHeader
from phasegate.domain.workflow import PhaseKind, Workflow

#: The tool an agent calls to submit what an AGENT phase accepts.
SUBMIT_TOOLS = {
    "design": "submit",
    "tests": "submit_tests",
    "implementation": "submit_implementation",
    "fix": "fix_failures",
    "review": "submit",
}
STATUS = "get_session_status"


def agent_tools(wf: Workflow, session: SessionHeader) -> list[str]:
    """The MCP tools that can move or help this session now, status first."""
    phase = wf.phase(session.phase)
    if phase.kind is PhaseKind.FINAL:
        return [STATUS, "list_sessions", "claim_next", "start_session"]
    if session.paused:
        return [STATUS, "wait_for_decision"]
    if phase.kind is PhaseKind.HUMAN:
        # pre_review is listed wherever the workflow allows it; it refuses all but reviewers.
        return [STATUS, "wait_for_decision", "request_approval"] + (
            ["pre_review"] if wf.pre_review else []
        )
    if phase.kind is PhaseKind.AGENT:
        return [STATUS, SUBMIT_TOOLS.get(phase.submission or "", "submit_implementation")]
    if phase.automation == "run_tests":
        return [STATUS, "run_tests"]
    return [STATUS]


def next_action(wf: Workflow, session: Session) -> str:
    """One sentence telling the agent what to do now."""
    phase = wf.phase(session.phase)
    sid = session.short_id
    if phase.kind is PhaseKind.FINAL:
        return (
            f"Session {sid} is {session.phase}; nothing more to do here: call claim_next "
            "or list_sessions for other work."
        )
    if session.paused:
        return (
            f"A human paused session {sid}; call wait_for_decision(session_id) to wait until "
            "it is resumed, and change nothing meanwhile."
        )
    if phase.kind is PhaseKind.HUMAN:
        reviewer = (
            " A reviewer agent may first attach findings for the human with pre_review."
            if wf.pre_review
            else ""
        )
        return (
            f"Session {sid} waits for a human decision at {session.phase}; call "
            "wait_for_decision(session_id) (optionally request_approval first with a note "
            f"for the reviewer). You cannot approve it yourself.{reviewer}"
        )
    if phase.kind is PhaseKind.AGENT:
        return _agent_advice(wf, session, phase.submission or "")
    if phase.automation == "run_tests":
        return (
            f"Call run_tests(session_id) so phasegate runs the approved tests on session "
            f"{sid}'s newest commit."
        )
    return f"phasegate is working on session {sid}; call get_session_status again shortly."


def _agent_advice(wf: Workflow, session: Session, submission: str) -> str:
    tool = SUBMIT_TOOLS.get(submission, "submit_implementation")
    feedback = session.context.get("feedback") or []
    rejected = bool(feedback) and feedback[-1].get("phase") in _gates_leading_to(wf, session.phase)
    redo = " Address the reviewer's feedback first." if rejected else ""
    if submission == "design":
        path = session.context.get("design_path") or "the design document"
        return (
            f"Write the design for the request (in `design`) into {path}, and only that file, "
            f'then call submit(session_id, kind="design", files=[{{path, content}}], '
            f"note=your reasoning); a human reviews it.{redo}"
        )
    if submission == "review":
        return (
            "Analyse the failures in `failures` against the design and the change (git diff "
            "from the base commit in the session's worktree), and call "
            'submit(session_id, kind="review", note=your analysis for the coder) with no '
            "files: a reviewer changes no code."
        )
    if submission == "tests":
        return (
            f"Write tests for the design (in `design`) and call {tool}(session_id, "
            f"files=[{{path, content}}], note=your reasoning).{redo}"
        )
    if submission == "fix":
        left = wf.max_fix_attempts - session.fix_attempts
        return (
            f"Fix the code (never the approved tests) for the failures in `failures` or the "
            f"reviewer's feedback, then call {tool}(session_id, files, note); "
            f"{left} fix attempt(s) left.{redo}"
        )
    return (
        f"Write the implementation so the approved tests pass, without changing them, and "
        f"call {tool}(session_id, files=[{{path, content}}], note).{redo}"
    )


def _gates_leading_to(wf: Workflow, phase: str) -> set[str]:
    return {
        t.source
        for t in wf.transitions
        if t.target == phase and wf.phase(t.source).kind is PhaseKind.HUMAN
    }
