"""The brief a human reads before deciding: what is decided, on what evidence, what changed.

One builder for the dashboard's session page and `phasegate show`, so both say
the same thing: what the gate decides and what approving does; who submitted
and when, with the agent's note; the run in one line; what must be seen first
(tests already passing or not loading, refused attempts, harness tampering, an
unsandboxed run, a setup error); and what changed since the last decision at
this gate. Pure: it reads the session, its events and its runs as given.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from phasegate.domain.session import Session
from phasegate.domain.workflow import PhaseKind, Workflow
from phasegate.review_rounds import Attempt, GateDecision, Round, last_decision_at, review_rounds
from phasegate.reviews import gate_pre_review

#: What each built-in gate decides and what approving does; other gates use the workflow's words.
GATE_WORDS = {
    "awaiting_test_review": (
        "Are these the right tests for the design? They fail now because nothing is implemented.",
        "Approving locks these tests: a coder then implements against them and may not change "
        "them. Rejecting sends your comment back to the tester.",
    ),
    "awaiting_final_review": (
        "Is this implementation what the design asked for? phasegate's own run of the approved "
        "tests passed.",
        "Approving completes the session; its branch is then ready to merge. Rejecting sends "
        "your comment to the coder as a fix to make.",
    ),
}
ESCALATION_CAUSES = {
    "tests_failed": "the fix loop used all its attempts and the tests still fail",
    "tests_flagged": "a run found code reaching into the test harness",
    "setup_failed": "the tests could not run as configured",
}
CHANGES_SHOWN = 4


@dataclass(frozen=True)
class Submitted:
    what: str  # tests, implementation, fix
    by: str
    at: str
    commit: str
    paths: tuple[str, ...]
    note: str


@dataclass(frozen=True)
class ReviewBrief:
    """What a human needs first on a session, in words both the page and the terminal show."""

    kind: str  # review, escalation, setup_error, agent, system, completed, cancelled, failed
    phase: str
    paused: bool
    question: str  # what is being decided (or what the session waits for)
    approving: str  # what approving does; empty where there is nothing to approve
    submitted: Submitted | None
    # Every path a submission other than the tests changed since the base, first change
    # first: what merging takes besides the tests, before a reopen_tests too.
    code_paths: tuple[str, ...]
    agent_message: str  # the agent's request for approval at this gate
    pre_review: Mapping[str, Any] | None  # a reviewer agent's findings at this gate
    run_line: str  # the run behind this gate, in one line
    run_status: str  # its status (passed, failed, error…); empty before any run
    run_id: str  # its id in the test runs; empty before any run
    run_expected_to_fail: bool  # a red run at the test review: failing is the point
    warnings: tuple[str, ...]
    last_decision: GateDecision | None  # the previous decision at this gate
    changes: tuple[str, ...]  # what happened since that decision
    round: int  # 1 for a first review

    @property
    def at_gate(self) -> bool:
        return self.kind in ("review", "escalation", "setup_error")


def build_brief(
    workflow: Workflow,
    session: Session,
    events: Sequence[Mapping[str, Any]],
    runs: Sequence[Mapping[str, Any]],
) -> ReviewBrief:
    """The brief of `session` from its workflow, events (oldest first) and test runs."""
    rounds = review_rounds(workflow, events, runs)
    kind = _kind(workflow, session)
    question, approving = _question(workflow, session, kind, events)
    attempts = [a for r in rounds for a in r.attempts]
    summary, expected = _run_summary(session, kind, attempts)
    prior = last_decision_at(rounds, session.phase) if kind != "agent" else None
    return ReviewBrief(
        kind=kind,
        phase=session.phase,
        paused=session.paused,
        question=question,
        approving=approving,
        submitted=_submitted(attempts[-1]) if attempts else None,
        code_paths=tuple(
            dict.fromkeys(p for a in attempts if a.submission != "tests" for p in a.paths)
        ),
        agent_message=_agent_message(session),
        pre_review=gate_pre_review(session),
        run_line=_run_line(summary, expected),
        run_status=str((summary or {}).get("status") or ""),
        run_id=str((summary or {}).get("run_id") or ""),
        run_expected_to_fail=expected,
        warnings=tuple(_warnings(session, summary, rounds)),
        last_decision=prior[0] if prior else None,
        changes=tuple(_changes(prior[1], rounds)) if prior else (),
        round=len([r for r in rounds if r.decision and r.decision.phase == session.phase]) + 1,
    )


def _kind(workflow: Workflow, session: Session) -> str:
    phase = workflow.phase(session.phase)
    if phase.kind is PhaseKind.FINAL:
        return session.phase if session.phase in ("completed", "cancelled") else "failed"
    if phase.kind is PhaseKind.HUMAN:
        if session.context.get("setup_error"):
            return "setup_error"
        # A gate a human can approve is a routine review; one without is an escalation.
        approvable = any(t.action == "approve" for t in workflow.transitions_from(phase.name))
        return "review" if approvable else "escalation"
    return "agent" if phase.kind is PhaseKind.AGENT else "system"


def _question(
    workflow: Workflow, session: Session, kind: str, events: Sequence[Mapping[str, Any]]
) -> tuple[str, str]:
    phase = workflow.phase(session.phase)
    if kind == "review":
        approve = workflow.transition("approve", phase.name)
        default = (phase.description, approve.description if approve else "")
        return GATE_WORDS.get(phase.name, default)
    if kind in ("escalation", "setup_error"):
        entered = next((e for e in reversed(events) if e["to_phase"] == phase.name), None)
        cause = ESCALATION_CAUSES.get(str(entered["action"]) if entered else "", phase.description)
        if kind == "setup_error":
            cause = ESCALATION_CAUSES["setup_failed"]
        limit = _attempt_limit(workflow, session)
        used = f" ({session.fix_attempts} of {limit} attempts used)" if limit else ""
        return (
            f"Escalation: {cause}{used}. Choose how it goes on: retry with guidance, "
            "run the tests again, send it back to rewrite the tests, or cancel.",
            "",
        )
    if kind == "agent":
        return f"Nothing to decide: an agent ({phase.role}) is at work: {phase.description}.", ""
    if kind == "system":
        return f"Nothing to decide: {phase.description}.", ""
    return f"This session is {session.phase}; nothing more to decide.", ""


def _attempt_limit(workflow: Workflow, session: Session) -> int:
    """The fix attempts the session may use: its kept configuration's, else the workflow's."""
    values = (session.context.get("config") or {}).get("values") or {}
    return int(values.get("max_fix_attempts") or workflow.max_fix_attempts)


def _run_summary(
    session: Session, kind: str, attempts: Sequence[Attempt]
) -> tuple[Mapping[str, Any] | None, bool]:
    """The run behind the newest work, and whether its failing is expected.

    Newest work that is tests (or a design) is judged by its red run, where failing
    is the point at a review; newest work that is code, by phasegate's last run.
    """
    context = session.context
    latest = attempts[-1].submission if attempts else None
    if latest in ("design", "tests") or not context.get("test_results"):
        red: Mapping[str, Any] | None = context.get("red_run")
        return red, kind == "review" and (red or {}).get("status") == "failed"
    return context.get("test_results"), False


def _run_line(run: Mapping[str, Any] | None, expected: bool) -> str:
    if not run:
        return "No test run yet."
    label = "Red run (the tests against the code before the change)" if expected else "Last run"
    verdict = f"{run.get('status')}: {run.get('reason')}"
    if expected:
        verdict += ", as expected before any implementation"
    where = f"sandbox {run.get('sandbox') or 'none'}"
    seconds = run.get("duration_s")
    took = f", {seconds:.1f} s" if isinstance(seconds, int | float) else ""
    return f"{label}: {verdict} ({where}{took}, commit {str(run.get('commit') or '')[:8]})"


def _warnings(
    session: Session, run: Mapping[str, Any] | None, rounds: Sequence[Round]
) -> list[str]:
    """What must be seen before deciding, most serious first, each once."""
    found: list[str] = []
    problem = session.context.get("setup_error")
    if problem:
        found.append(f"setup error: {problem.get('reason')}; fix {problem.get('fix')}, then retry")
    if run:
        found += [str(w) for w in run.get("warnings") or []]
        errors = int((run.get("counts") or {}).get("errors") or 0)
        if errors and session.phase == "awaiting_test_review":
            found.append(
                f"{errors} test{'s' if errors != 1 else ''} errored rather than failed in the red "
                "run: a test that errors (a missing fixture, a broken import) may itself be broken"
            )
        if run.get("sandbox") == "none" and not any("UNSANDBOXED" in w for w in found):
            found.append('UNSANDBOXED run (sandbox = "none"): its evidence deserves less trust')
    refusals = session.context.get("refusals") or {}
    count = int(refusals.get("count") or 0)
    if count:
        last = (refusals.get("recent") or [{}])[-1]
        found.append(
            f"{count} refused submission{'s' if count != 1 else ''} (attempts to "
            f"{_refusal_cause(last)}): see the timeline"
        )
    return list(dict.fromkeys(found))


def _refusal_cause(entry: Mapping[str, Any]) -> str:
    cause = str(entry.get("cause") or "refused")
    paths = ", ".join(str(p) for p in (entry.get("paths") or [])[:3])
    words = {"locked_test": "change a locked test", "forbidden_path": "write a forbidden path"}
    return words.get(cause, f"submit ({cause})") + (f" — {paths}" if paths else "")


def _agent_message(session: Session) -> str:
    """The agent's request for approval, if it was made since the session entered this phase."""
    request = session.context.get("approval_request") or {}
    entered = session.phase_entered_at.isoformat()
    current = request.get("phase") == session.phase and request.get("entered") == entered
    return str(request.get("message") or "") if current else ""


def _submitted(attempt: Attempt) -> Submitted:
    return Submitted(
        attempt.submission, attempt.by, attempt.at, attempt.commit, attempt.paths, attempt.note
    )


def _changes(since: Sequence[Attempt], rounds: Sequence[Round]) -> list[str]:
    """One line per submission since the last decision here, each with its run's verdict."""
    lines = []
    earlier = _previous_run(rounds, since)
    for attempt in since[-CHANGES_SHOWN:]:
        files = ", ".join(attempt.paths) or "no files"
        line = f"{attempt.action} by {attempt.by} at {attempt.at}: {files}"
        run = attempt.run
        if run is not None:
            line += f"; run {run.get('status')}: {run.get('reason')}"
            if earlier is not None and earlier.get("reason") != run.get("reason"):
                line += f" (before: {earlier.get('reason')})"
            earlier = run
        lines.append(line)
    if len(since) > CHANGES_SHOWN:
        lines.insert(0, f"{len(since) - CHANGES_SHOWN} earlier submissions not listed")
    if not since:
        lines.append("nothing submitted since then")
    return lines


def _previous_run(rounds: Sequence[Round], since: Sequence[Attempt]) -> Mapping[str, Any] | None:
    """The newest run before the first of `since`: what the reviewer saw last time."""
    first = since[0].seq if since else None
    runs = [a.run for r in rounds for a in r.attempts if a.run and (first is None or a.seq < first)]
    return runs[-1] if runs else None
