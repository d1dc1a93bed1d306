"""A Hypothesis state machine: random action sequences against a tiny model of `tdd`."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import pytest
from engine_helpers import ACTOR_OF, start
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from phasegate.domain.principal import Principal
from phasegate.domain.session import Actor, Command, Session, apply
from phasegate.domain.workflow import ActorKind
from phasegate.errors import Conflict, InvalidTransition
from phasegate.orchestrator import Orchestrator

MAX = 2  # the engine suite's max_fix_attempts
ENGINE_ACTIONS = (
    "submit_tests",
    "submit_implementation",
    "fix_failures",
    "tests_passed",
    "tests_failed",
)
HUMAN_ACTIONS = ("approve", "reject", "retry", "reopen_tests", "pause", "resume", "cancel")
EDGES = {
    ("generating_tests", "submit_tests"): "awaiting_test_review",
    ("awaiting_test_review", "approve"): "generating_implementation",
    ("awaiting_test_review", "reject"): "generating_tests",
    ("generating_implementation", "submit_implementation"): "running_tests",
    ("running_tests", "tests_passed"): "awaiting_final_review",
    ("running_tests", "tests_failed"): "fixing_failures",
    ("fixing_failures", "fix_failures"): "running_tests",
    ("awaiting_human_intervention", "retry"): "fixing_failures",
    ("awaiting_human_intervention", "reopen_tests"): "generating_tests",
    ("awaiting_final_review", "approve"): "completed",
    ("awaiting_final_review", "reject"): "fixing_failures",
}
RESETS = {"retry", "reopen_tests", "reject"}


@dataclass
class Model:
    """What the workflow should look like, written independently of the engine."""

    phase: str = "generating_tests"
    paused: bool = False
    attempts: int = 0

    def step(self, action: str) -> bool:
        """Apply `action` if legal; return whether it was."""
        if self.phase in ("completed", "cancelled"):
            return False
        if action in ("pause", "resume"):
            if self.paused == (action == "pause"):
                return False
            self.paused = action == "pause"
            return True
        if action == "cancel":
            self.phase, self.paused = "cancelled", False
            return True
        target = EDGES.get((self.phase, action))
        if self.paused or target is None:
            return False
        if action in RESETS and self.phase != "awaiting_test_review":
            self.attempts = 0
        if action == "tests_failed":
            self.attempts += 1
            target = "awaiting_human_intervention" if self.attempts >= MAX else target
        self.phase = target
        return True


def replay(events: list[dict[str, Any]], orch: Orchestrator, seed: Session) -> Session:
    """Rebuild a session by applying its logged actions to a blank one with today's code."""
    wf = orch.workflow_of(seed)
    session = Session(
        **{
            **seed.__dict__,
            "phase": wf.initial,
            "version": 0,
            "fix_attempts": 0,
            "paused": False,
            "context": {},
            "results": {},
        }
    )
    for e in events:
        actor = Actor(ActorKind(e["actor_kind"]), e["actor_id"], e["actor_role"])
        command = Command(e["action"], actor, comment=e["payload"].get("comment", ""))
        session, draft = apply(wf, session, command, seed.updated_at)
        assert (draft.to_phase, draft.version) == (e["to_phase"], e["version"])
    return session


def machine(orch: Orchestrator, human: Principal) -> type[RuleBasedStateMachine]:
    keys = itertools.count()

    class SessionMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.sid = start(orch, human).id
            self.model = Model()
            self.last: tuple[str, str, str, int] | None = None

        @rule(data=st.data())
        def act_forward(self, data: st.DataObject) -> None:
            """Mostly move forward, so deep phases (escalation, completion) are reached."""
            forward = sorted(a for (phase, a) in EDGES if phase == self.model.phase)
            if self.model.paused:
                forward = ["resume"]
            if forward:
                self.apply_action(data.draw(st.sampled_from(forward)))

        @rule()
        def fail_a_run(self) -> None:
            """Fail the running tests (fixing first if need be), so the fix budget runs out."""
            if self.model.paused:
                return
            if self.model.phase == "fixing_failures":
                self.apply_action("fix_failures")
            if self.model.phase == "running_tests":
                self.apply_action("tests_failed")

        @rule(action=st.sampled_from(ENGINE_ACTIONS + HUMAN_ACTIONS))
        def act_any(self, action: str) -> None:
            """Any action at all: the illegal ones must be refused."""
            self.apply_action(action)

        def apply_action(self, action: str) -> None:
            """Take `action` through the engine and check it agrees with the model."""
            legal = self.model.step(action)
            key = f"k{next(keys)}"
            try:
                if action in HUMAN_ACTIONS:
                    new = orch.decide(self.sid, action, human, comment="c", idempotency_key=key)
                    self.last = (action, key, new.phase, new.version)
                else:
                    actor = ACTOR_OF[action]
                    new = orch.kernel.transition(self.sid, lambda s: Command(action, actor))
            except InvalidTransition:
                assert not legal, f"{action} was refused but is legal"
            else:
                assert legal, f"{action} was accepted but is illegal"

        @rule()
        def retry_last_decision(self) -> None:
            """A client retrying its last decision with the same key gets the same answer."""
            if self.last is None:
                return
            action, key, _, version = self.last
            before = len(orch.timeline(self.sid))
            try:
                again = orch.decide(self.sid, action, human, comment="c", idempotency_key=key)
            except Conflict as exc:  # pragma: no cover - would be a bug
                raise AssertionError(f"replaying {action} raised {exc}") from exc
            assert again.version >= version
            assert len(orch.timeline(self.sid)) == before

        @invariant()
        def store_matches_model_and_log(self) -> None:
            stored = orch.get(self.sid)
            assert (stored.phase, stored.paused, stored.fix_attempts) == (
                self.model.phase,
                self.model.paused,
                self.model.attempts,
            )
            events = orch.timeline(self.sid)
            rebuilt = replay(events, orch, stored)
            assert (rebuilt.phase, rebuilt.paused, rebuilt.fix_attempts, rebuilt.version) == (
                stored.phase,
                stored.paused,
                stored.fix_attempts,
                stored.version,
            )
            assert orch.verify_audit(self.sid)[0].ok

    return SessionMachine


@pytest.mark.slow
def test_random_action_sequences_agree_with_the_model(
    orch: Orchestrator, human: Principal, db_url: str
) -> None:
    """Random sequences keep the stored state, the model and the replayed event log equal."""
    examples = 50
    run_state_machine_as_test(
        machine(orch, human),
        settings=settings(
            max_examples=examples,
            stateful_step_count=20,
            derandomize=True,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
        ),
    )
    reached = {e["to_phase"] for sid in _ids(orch) for e in orch.timeline(sid)}
    assert len(_ids(orch)) >= examples
    assert {"awaiting_human_intervention", "awaiting_final_review", "cancelled"} <= reached


def _ids(orch: Orchestrator) -> list[str]:
    return [s.id for s in orch.list_sessions(include_finished=True, limit=10_000)]
