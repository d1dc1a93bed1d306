"""Workflows as data: phases, transitions, gates, roles, artifacts and locks.

A phase that waits for an agent declares the artifact it produces (design,
tests, implementation, fix or review); a gate declares what approving it locks
(`locks = ("tests",)`). The engine, the diagram (`to_mermaid`) and the JSON
form all read the same `Workflow` value, so they cannot disagree. The built-in
workflows (`tdd`, `spec`) are in `builtin_workflows.py`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
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
    submission: str | None = None  # the artifact an AGENT phase produces (ARTIFACTS)
    description: str = ""
    locks: tuple[str, ...] = ()  # for a gate: the artifacts its approval locks (LOCKABLE)

    @property
    def artifact(self) -> str | None:
        """What this phase produces (the TOML calls it `artifact`; older ones `submission`)."""
        return self.submission


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


#: What an agent phase can produce, and the action that submits it.
SUBMIT_ACTIONS: Mapping[str, str] = {
    "design": "submit_design",
    "tests": "submit_tests",
    "implementation": "submit_implementation",
    "fix": "fix_failures",
    "review": "submit_review",
}
ARTIFACTS = tuple(SUBMIT_ACTIONS)
#: What a gate can lock: the artifacts later phases must not change (code keeps changing).
LOCKABLE = ("design", "tests")
#: The gate that locked the tests before workflows declared locks (see `_legacy_locks`).
LEGACY_TEST_GATE = "awaiting_test_review"
REVIEWER = "reviewer"

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
    pre_review: bool = False  # a reviewer agent may attach findings at the gates
    _by_name: dict[str, Phase] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "phases", _legacy_locks(self.phases))
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
        for p in self.phases:
            problem = self._phase_problem(p)
            if problem:
                raise ValueError(f"workflow {self.name!r}: {problem}")

    def _phase_problem(self, p: Phase) -> str | None:
        """What contradicts itself in phase `p`, in one clause; None if nothing."""
        if p.submission is not None and p.submission not in ARTIFACTS:
            return f"phase {p.name!r} has unknown artifact {p.submission!r}; use {_or(ARTIFACTS)}"
        if p.kind is PhaseKind.AGENT:
            if not p.role:
                return (
                    f"agent phase {p.name!r} has no role; "
                    'set role = "tester" (or designer, coder, reviewer)'
                )
            if p.submission is None:
                return f"agent phase {p.name!r} produces nothing; set artifact = {_or(ARTIFACTS)}"
            if (p.submission == "review") != (p.role == REVIEWER):
                return (
                    f"agent phase {p.name!r} has role {p.role!r} and artifact {p.submission!r}; "
                    "a review is written by a reviewer, and a reviewer writes only reviews"
                )
            action = SUBMIT_ACTIONS[p.submission]
            if not any(
                t.action == action and t.actor is ActorKind.AGENT
                for t in self.transitions_from(p.name)
            ):
                return (
                    f"agent phase {p.name!r} produces {p.submission} but no {action!r} "
                    "transition (actor agent) leaves it"
                )
        elif p.submission is not None:
            return (
                f"{p.kind.value} phase {p.name!r} declares artifact {p.submission!r}; "
                "only agent phases produce artifacts"
            )
        if p.locks and p.kind is not PhaseKind.HUMAN:
            return f"phase {p.name!r} locks {_or(p.locks)}, but only gates (kind human) lock"
        for artifact in p.locks:
            if artifact not in LOCKABLE:
                return f"gate {p.name!r} locks {artifact!r}; only {_or(LOCKABLE)} can be locked"
            if not any(q.submission == artifact for q in self.phases):
                return (
                    f"gate {p.name!r} locks {artifact!r}, but no phase produces it "
                    f'(no phase has artifact = "{artifact}")'
                )
        return None

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

    def locks_at(self, gate: str) -> tuple[str, ...]:
        """The artifacts approving `gate` locks."""
        return self.phase(gate).locks

    def produced_in(self, phase: str) -> str | None:
        """The artifact an agent produces in `phase`, if any."""
        return self.phase(phase).submission

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
            "pre_review": self.pre_review,
            "phases": [asdict(p) for p in self.phases],
            "transitions": [asdict(t) for t in self.transitions],
            "universal_actions": {k: v.value for k, v in UNIVERSAL_ACTIONS.items()},
        }

    def edge_label(self, t: Transition) -> str:
        """A transition's label in a diagram: its action, and what approving a gate locks."""
        label = t.action + (" (comment)" if t.requires_comment else "")
        locks = self.phase(t.source).locks if t.action == "approve" else ()
        return label + (f" · locks {', '.join(locks)}" if locks else "")

    def to_mermaid(self, highlight: str | None = None) -> str:
        """A Mermaid state diagram; `highlight` marks the current phase."""
        lines = ["stateDiagram-v2", f"    [*] --> {self.initial}"]
        for t in self.transitions:
            lines.append(f"    {t.source} --> {t.target}: {self.edge_label(t)}")
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


def _legacy_locks(phases: tuple[Phase, ...]) -> tuple[Phase, ...]:
    """A workflow that declares no locks at all keeps the rule from before locks existed.

    Approving `awaiting_test_review` locked the tests by its name alone; custom
    workflows written then (and sessions running on them) must stay locked.
    """
    if any(p.locks for p in phases) or not any(p.submission == "tests" for p in phases):
        return phases
    return tuple(
        replace(p, locks=("tests",))
        if p.name == LEGACY_TEST_GATE and p.kind is PhaseKind.HUMAN
        else p
        for p in phases
    )


def _or(names: tuple[str, ...] | list[str]) -> str:
    return ", ".join(names[:-1]) + (" or " if len(names) > 1 else "") + names[-1]
