"""The built-in workflows, `tdd` and `spec`, their options, and workflows read from TOML.

`spec` is `tdd` with a design phase in front: a designer drafts the design
from a short request, and a human approves it (which locks it) before anyone
writes tests. Both take two options, off by default:

- `review_failures`: a failed run goes to a reviewer (`analyzing_failures`),
  whose analysis guides the coder in `fixing_failures`;
- `pre_review`: a reviewer agent may attach findings at a gate before the human decides.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from phasegate.domain.workflow import (
    CANCELLED,
    FAILED,
    ActorKind,
    Phase,
    PhaseKind,
    Transition,
    Workflow,
)

S, A, H = ActorKind.SYSTEM, ActorKind.AGENT, ActorKind.HUMAN
OPTIONS = ("review_failures", "pre_review", "max_fix_attempts")


def _t(
    action: str, source: str, target: str, actor: ActorKind, description: str, **kw: Any
) -> Transition:
    return Transition(action, source, target, actor, description, **kw)


def _opening(first_work: str, loads: str) -> tuple[tuple[Phase, ...], tuple[Transition, ...]]:
    phases = (
        Phase(
            "initializing",
            PhaseKind.SYSTEM,
            automation="begin",
            description="phasegate prepares the session and its worktree",
        ),
        Phase(
            "reading_design",
            PhaseKind.SYSTEM,
            automation="load_design",
            description=f"phasegate loads the task's {loads}",
        ),
    )
    transitions = (
        _t("begin", "initializing", "reading_design", S, "phasegate starts the session"),
        _t("load_design", "reading_design", first_work, S, f"the {loads} is loaded"),
    )
    return phases, transitions


_DESIGN_PHASES = (
    Phase(
        "drafting_design",
        PhaseKind.AGENT,
        role="designer",
        submission="design",
        description="a designer agent drafts the design from the request",
    ),
    Phase(
        "awaiting_design_review",
        PhaseKind.HUMAN,
        description="a human reviews the design, which approving locks",
        locks=("design",),
    ),
)
_DESIGN_TRANSITIONS = (
    _t(
        "submit_design",
        "drafting_design",
        "awaiting_design_review",
        A,
        "the designer submits the design",
    ),
    _t(
        "approve",
        "awaiting_design_review",
        "generating_tests",
        H,
        "a human approves the design, which is then locked",
    ),
    _t(
        "reject",
        "awaiting_design_review",
        "drafting_design",
        H,
        "a human rejects the design with feedback",
        requires_comment=True,
    ),
)


def _tdd_phases(review_failures: bool) -> tuple[Phase, ...]:
    analyzing = (
        Phase(
            "analyzing_failures",
            PhaseKind.AGENT,
            role="reviewer",
            submission="review",
            description="a reviewer agent analyses the failures for the coder (no code)",
        ),
    )
    return (
        Phase(
            "generating_tests",
            PhaseKind.AGENT,
            role="tester",
            submission="tests",
            description="a tester agent writes tests from the design",
        ),
        Phase(
            "awaiting_test_review",
            PhaseKind.HUMAN,
            description="a human reviews the tests and their red run",
            locks=("tests",),
        ),
        Phase(
            "generating_implementation",
            PhaseKind.AGENT,
            role="coder",
            submission="implementation",
            description="a coder agent implements against the approved tests",
        ),
        Phase(
            "running_tests",
            PhaseKind.SYSTEM,
            role="runner",
            automation="run_tests",
            description="phasegate runs the approved tests on the submitted commit",
        ),
        *(analyzing if review_failures else ()),
        Phase(
            "fixing_failures",
            PhaseKind.AGENT,
            role="coder",
            submission="fix",
            description="a coder agent fixes the failing tests",
        ),
        Phase(
            "awaiting_human_intervention",
            PhaseKind.HUMAN,
            description=(
                "the fix loop ran out of attempts, a run was flagged, or the tests could not "
                "run as configured; a human decides"
            ),
        ),
        Phase(
            "awaiting_final_review",
            PhaseKind.HUMAN,
            description="a human reviews the green implementation",
        ),
        Phase("completed", PhaseKind.FINAL, description="approved and done"),
        Phase(CANCELLED, PhaseKind.FINAL, description="cancelled by a human"),
        Phase(FAILED, PhaseKind.FINAL, description="stopped by an unrecoverable error"),
    )


def _tdd_transitions(review_failures: bool) -> tuple[Transition, ...]:
    after_failure = "analyzing_failures" if review_failures else "fixing_failures"
    analysis = (
        _t(
            "submit_review",
            "analyzing_failures",
            "fixing_failures",
            A,
            "the reviewer submits an analysis of the failures for the coder",
        ),
    )
    return (
        _t(
            "submit_tests",
            "generating_tests",
            "awaiting_test_review",
            A,
            "the tester submits tests; phasegate runs them once (the red run)",
        ),
        _t(
            "approve",
            "awaiting_test_review",
            "generating_implementation",
            H,
            "a human approves the tests, which are then locked",
        ),
        _t(
            "reject",
            "awaiting_test_review",
            "generating_tests",
            H,
            "a human rejects the tests with feedback",
            requires_comment=True,
        ),
        _t(
            "submit_implementation",
            "generating_implementation",
            "running_tests",
            A,
            "the coder submits an implementation",
        ),
        _t(
            "tests_passed",
            "running_tests",
            "awaiting_final_review",
            S,
            "phasegate's run of the approved tests passed",
        ),
        _t(
            "tests_failed",
            "running_tests",
            after_failure,
            S,
            "phasegate's run failed; one fix attempt used",
            counts_attempt=True,
            on_limit="awaiting_human_intervention",
        ),
        *(analysis if review_failures else ()),
        _t(
            "tests_flagged",
            "running_tests",
            "awaiting_human_intervention",
            S,
            "the run found code reaching into the test harness; a human looks at it",
            counts_attempt=True,
        ),
        _t(
            "setup_failed",
            "running_tests",
            "awaiting_human_intervention",
            S,
            "the tests could not run as configured; a human fixes the setup (no attempt used)",
        ),
        _t(
            "setup_failed",
            "generating_tests",
            "awaiting_human_intervention",
            S,
            "the submitted tests could not run as configured; a human fixes the setup",
        ),
        _t("fix_failures", "fixing_failures", "running_tests", A, "the coder submits a fix"),
        _t(
            "retry",
            "awaiting_human_intervention",
            "fixing_failures",
            H,
            "a human gives guidance and a fresh fix budget",
            requires_comment=True,
            resets_attempts=True,
        ),
        _t(
            "rerun_tests",
            "awaiting_human_intervention",
            "running_tests",
            H,
            "a human fixed the setup; phasegate runs the tests again",
        ),
        _t(
            "reopen_tests",
            "awaiting_human_intervention",
            "generating_tests",
            H,
            "a human sends the session back to rewrite the tests",
            resets_attempts=True,
        ),
        _t("approve", "awaiting_final_review", "completed", H, "a human approves the result"),
        _t(
            "reject",
            "awaiting_final_review",
            "fixing_failures",
            H,
            "a human rejects the result with feedback",
            requires_comment=True,
            resets_attempts=True,
        ),
    )


def tdd_workflow(
    *, review_failures: bool = False, pre_review: bool = False, max_fix_attempts: int = 5
) -> Workflow:
    """The seed's state machine: design → tests → review → code → runs → fix loop → review."""
    phases, transitions = _opening("generating_tests", "design document")
    return Workflow(
        name="tdd",
        description=(
            "design → tests → human review → implementation → tests → fix loop → final review"
        ),
        initial="initializing",
        max_fix_attempts=max_fix_attempts,
        phases=(*phases, *_tdd_phases(review_failures)),
        transitions=(*transitions, *_tdd_transitions(review_failures)),
        pre_review=pre_review,
    )


def spec_workflow(
    *, review_failures: bool = False, pre_review: bool = False, max_fix_attempts: int = 5
) -> Workflow:
    """`tdd` after a designer drafts the design from a request and a human approves it."""
    phases, transitions = _opening("drafting_design", "request")
    return Workflow(
        name="spec",
        description=(
            "request → design → human review (locks it) → then tdd: tests → review → "
            "implementation → tests → fix loop → final review"
        ),
        initial="initializing",
        max_fix_attempts=max_fix_attempts,
        phases=(*phases, *_DESIGN_PHASES, *_tdd_phases(review_failures)),
        transitions=(*transitions, *_DESIGN_TRANSITIONS, *_tdd_transitions(review_failures)),
        pre_review=pre_review,
    )


TDD = tdd_workflow()
SPEC = spec_workflow()
BUILTIN_WORKFLOWS: Mapping[str, Workflow] = {TDD.name: TDD, SPEC.name: SPEC}
_BUILDERS = {"tdd": tdd_workflow, "spec": spec_workflow}


class InvalidWorkflow(ValueError):
    """A workflow table the project declares contradicts itself or misses a part."""

    def __init__(self, workflow: str, message: str) -> None:
        super().__init__(message)
        self.workflow = workflow


def configured_workflows(
    tables: Mapping[str, Mapping[str, Any]], max_fix_attempts: int = 5
) -> dict[str, Workflow]:
    """The built-ins under the project's options and fix budget, plus the project's own."""
    workflows: dict[str, Workflow] = {}
    for name in [*_BUILDERS, *tables]:
        table = tables.get(name, {})
        try:
            if name in _BUILDERS and "phases" not in table:
                options = {"max_fix_attempts": max_fix_attempts, **_builtin_options(name, table)}
                workflows[name] = _BUILDERS[name](**options)
            else:
                workflows[name] = workflow_from_mapping(name, table)
        except ValueError as exc:
            raise InvalidWorkflow(name, str(exc)) from exc
    return workflows


def _builtin_options(name: str, table: Mapping[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(table) - set(OPTIONS))
    if unknown:
        raise ValueError(
            f"workflow {name!r} is built in and has no option {unknown[0]!r}; its options are "
            f"{', '.join(OPTIONS)} (or define the whole workflow with phases and transitions)"
        )
    options: dict[str, Any] = {}
    for key, value in table.items():
        wanted = int if key == "max_fix_attempts" else bool
        if type(value) is not wanted:
            kind = "a number" if wanted is int else "true or false"
            raise ValueError(f"workflow {name!r}: {key} must be {kind}")
        options[key] = value
    return options


def workflow_from_mapping(name: str, data: Mapping[str, Any]) -> Workflow:
    """Build a user workflow from its TOML table; raises ValueError naming the problem."""
    try:
        phases = tuple(_phase(p) for p in data["phases"])
        transitions = tuple(
            Transition(
                action=str(t["action"]),
                source=str(t["from"]),
                target=str(t["to"]),
                actor=ActorKind(t["actor"]),
                description=str(t.get("description", "")),
                requires_comment=bool(t.get("requires_comment", False)),
                counts_attempt=bool(t.get("counts_attempt", False)),
                on_limit=t.get("on_limit"),
                resets_attempts=bool(t.get("resets_attempts", False)),
            )
            for t in data["transitions"]
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"workflow {name!r} is malformed: {exc}") from exc
    return Workflow(
        name=name,
        initial=str(data.get("initial", phases[0].name if phases else "")),
        phases=phases,
        transitions=transitions,
        max_fix_attempts=int(data.get("max_fix_attempts", 5)),
        description=str(data.get("description", "")),
        pre_review=bool(data.get("pre_review", False)),
    )


def _phase(p: Mapping[str, Any]) -> Phase:
    locks = p.get("locks", [])
    if isinstance(locks, str) or not all(isinstance(a, str) for a in locks):
        raise ValueError(f'phase {p.get("name")!r}: locks must be a list, e.g. locks = ["tests"]')
    return Phase(
        name=str(p["name"]),
        kind=PhaseKind(p["kind"]),
        role=p.get("role"),
        automation=p.get("automation"),
        submission=p.get("artifact", p.get("submission")),
        description=str(p.get("description", "")),
        locks=tuple(locks),
    )
