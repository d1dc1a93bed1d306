"""Workflows as data: phases, transitions, gates and roles, and the built-in `tdd`.

The diagram (`to_mermaid`), the JSON form and the engine all read the same
`Workflow` value, so they cannot disagree.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any


class PhaseKind(StrEnum):
    """Who moves a session out of a phase."""

    SYSTEM = "system"  # phasegate itself (reading the design, running tests)
    AGENT = "agent"  # an agent of the phase's role submits work
    HUMAN = "human"  # a gate: only a human principal decides
    FINAL = "final"  # nothing happens any more


class ActorKind(StrEnum):
    SYSTEM = "system"
    AGENT = "agent"
    HUMAN = "human"


@dataclass(frozen=True)
class Phase:
    name: str
    kind: PhaseKind
    role: str | None = None  # the agent role that works in an AGENT phase
    automation: str | None = None  # what phasegate does in a SYSTEM phase
    submission: str | None = None  # what an AGENT phase accepts: tests | implementation | fix
    description: str = ""


@dataclass(frozen=True)
class Transition:
    action: str
    source: str
    target: str
    actor: ActorKind
    description: str = ""
    requires_comment: bool = False
    counts_attempt: bool = False  # a failed test run: one fix attempt used
    on_limit: str | None = None  # target instead, once the attempts reach the limit
    resets_attempts: bool = False


#: Actions every non-final phase accepts, besides its own transitions.
PAUSE, RESUME, CANCEL, FAIL = "pause", "resume", "cancel", "fail"
UNIVERSAL_ACTIONS: Mapping[str, ActorKind] = {
    PAUSE: ActorKind.HUMAN,
    RESUME: ActorKind.HUMAN,
    CANCEL: ActorKind.HUMAN,
    FAIL: ActorKind.SYSTEM,
}
CANCELLED, FAILED = "cancelled", "failed"


@dataclass(frozen=True)
class Workflow:
    name: str
    initial: str
    phases: tuple[Phase, ...]
    transitions: tuple[Transition, ...]
    max_fix_attempts: int = 5
    description: str = ""
    _by_name: dict[str, Phase] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_name", {p.name: p for p in self.phases})
        self._validate()

    def _validate(self) -> None:
        if len(self._by_name) != len(self.phases):
            raise ValueError(f"workflow {self.name!r} declares a phase twice")
        for required in (self.initial, CANCELLED, FAILED):
            if required not in self._by_name:
                raise ValueError(f"workflow {self.name!r} has no phase {required!r}")
        for t in self.transitions:
            for name in (t.source, t.target, t.on_limit):
                if name is not None and name not in self._by_name:
                    raise ValueError(
                        f"workflow {self.name!r}: transition {t.action!r} "
                        f"names unknown phase {name!r}"
                    )
            if self.phase(t.source).kind is PhaseKind.FINAL:
                raise ValueError(f"workflow {self.name!r}: {t.action!r} leaves final {t.source!r}")
        if self.max_fix_attempts < 1:
            raise ValueError(f"workflow {self.name!r}: max_fix_attempts must be at least 1")

    def phase(self, name: str) -> Phase:
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"workflow {self.name!r} has no phase {name!r}") from None

    def transition(self, action: str, source: str) -> Transition | None:
        """The transition `action` takes from `source`, if there is one."""
        for t in self.transitions:
            if t.action == action and t.source == source:
                return t
        return None

    def transitions_from(self, source: str) -> list[Transition]:
        return [t for t in self.transitions if t.source == source]

    def is_final(self, phase: str) -> bool:
        return self.phase(phase).kind is PhaseKind.FINAL

    def gates(self) -> list[str]:
        return [p.name for p in self.phases if p.kind is PhaseKind.HUMAN]

    def allowed_actions(self, phase: str, *, paused: bool) -> list[str]:
        """The actions a caller may take now, in declaration order.

        phasegate's own (tests_passed, setup_failed, …) are left out: nobody
        outside can take them, so offering them would only mislead.
        """
        if self.is_final(phase):
            return []
        if paused:
            return [RESUME, CANCEL]
        own = [t.action for t in self.transitions_from(phase) if t.actor is not ActorKind.SYSTEM]
        return [*dict.fromkeys(own), PAUSE, CANCEL]

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "initial": self.initial,
            "max_fix_attempts": self.max_fix_attempts,
            "phases": [asdict(p) for p in self.phases],
            "transitions": [asdict(t) for t in self.transitions],
            "universal_actions": {k: v.value for k, v in UNIVERSAL_ACTIONS.items()},
        }

    def to_mermaid(self, highlight: str | None = None) -> str:
        """A Mermaid state diagram; `highlight` marks the current phase."""
        lines = ["stateDiagram-v2", f"    [*] --> {self.initial}"]
        for t in self.transitions:
            label = t.action + (" (comment)" if t.requires_comment else "")
            lines.append(f"    {t.source} --> {t.target}: {label}")
            if t.on_limit:
                lines.append(
                    f"    {t.source} --> {t.on_limit}: {t.action} x{self.max_fix_attempts}"
                )
        for p in self.phases:
            if p.kind is PhaseKind.FINAL:
                lines.append(f"    {p.name} --> [*]")
        for p in self.phases:
            if p.kind is PhaseKind.HUMAN:
                lines.append(f"    class {p.name} gate")
        lines.append("    classDef gate fill:#fff3cd,stroke:#b58900")
        if highlight:
            lines.append("    classDef current fill:#cce5ff,stroke:#004085,stroke-width:3px")
            lines.append(f"    class {highlight} current")
        return "\n".join(lines)


def _t(
    action: str, source: str, target: str, actor: ActorKind, description: str, **kw: Any
) -> Transition:
    return Transition(action, source, target, actor, description, **kw)


S, A, H = ActorKind.SYSTEM, ActorKind.AGENT, ActorKind.HUMAN

TDD = Workflow(
    name="tdd",
    description="design → tests → human review → implementation → tests → fix loop → final review",
    initial="initializing",
    max_fix_attempts=5,
    phases=(
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
            description="phasegate loads the task's design document",
        ),
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
    ),
    transitions=(
        _t("begin", "initializing", "reading_design", S, "phasegate starts the session"),
        _t("load_design", "reading_design", "generating_tests", S, "the design is loaded"),
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
            "fixing_failures",
            S,
            "phasegate's run failed; one fix attempt used",
            counts_attempt=True,
            on_limit="awaiting_human_intervention",
        ),
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
    ),
)

BUILTIN_WORKFLOWS: Mapping[str, Workflow] = {TDD.name: TDD}


def workflow_from_mapping(name: str, data: Mapping[str, Any]) -> Workflow:
    """Build a user workflow from its TOML table; raises ValueError naming the problem."""
    try:
        phases = tuple(
            Phase(
                name=str(p["name"]),
                kind=PhaseKind(p["kind"]),
                role=p.get("role"),
                automation=p.get("automation"),
                submission=p.get("submission"),
                description=str(p.get("description", "")),
            )
            for p in data["phases"]
        )
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
    )
