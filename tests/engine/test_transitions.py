"""Every legal transition of `tdd` is taken, and every illegal one is refused by name."""

from __future__ import annotations

import pytest
from engine_helpers import (
    ALICE,
    CODER,
    PATHS,
    TESTER,
    act,
    bare_session,
    drive,
    event_count,
    start,
)

from phasegate.domain.builtin_workflows import TDD
from phasegate.domain.principal import Principal
from phasegate.domain.session import SYSTEM, Command
from phasegate.domain.workflow import UNIVERSAL_ACTIONS
from phasegate.errors import InvalidTransition, PermissionDenied
from phasegate.orchestrator import Orchestrator

ALL_ACTIONS = sorted({t.action for t in TDD.transitions} | set(UNIVERSAL_ACTIONS))
OPENING = ("initializing", "reading_design")
LEGAL = [(t.source, t.action) for t in TDD.transitions]


def _illegal_pairs() -> list[tuple[str, str]]:
    pairs = []
    for phase in PATHS:
        allowed = set(TDD.allowed_actions(phase, paused=False)) | {"fail"}
        allowed |= {t.action for t in TDD.transitions_from(phase)}  # phasegate's own too
        if TDD.is_final(phase):
            allowed = set()
        pairs += [(phase, a) for a in ALL_ACTIONS if a not in allowed]
    return pairs


@pytest.mark.parametrize(("source", "action"), LEGAL, ids=[f"{s}-{a}" for s, a in LEGAL])
def test_each_legal_transition_moves_to_its_target_with_one_event(
    orch: Orchestrator, human: Principal, source: str, action: str
) -> None:
    """A legal action moves the session to the declared target and writes exactly one event."""
    fresh = bare_session(orch) if source in OPENING else start(orch, human)
    session = drive(orch, fresh.id, source)
    before = event_count(orch, session.id)
    new = act(orch, session.id, action)
    transition = TDD.transition(action, source)
    assert transition is not None
    expected = transition.target
    if transition.on_limit and new.fix_attempts >= orch.workflow_of(new).max_fix_attempts:
        expected = transition.on_limit
    assert new.phase == expected
    assert new.version == session.version + 1
    assert event_count(orch, session.id) == before + 1
    last = orch.timeline(session.id)[-1]
    assert (last["action"], last["from_phase"], last["to_phase"]) == (action, source, expected)


def test_universal_actions_work_from_every_open_phase(orch: Orchestrator, human: Principal) -> None:
    """Pause and resume return to the same phase, and cancel is final, from every open phase."""
    for phase in [p for p in PATHS if not TDD.is_final(p)]:
        fresh = bare_session(orch) if phase in OPENING else start(orch, human)
        session = drive(orch, fresh.id, phase)
        paused = orch.decide(session.id, "pause", human)
        assert (paused.phase, paused.paused) == (phase, True)
        resumed = orch.decide(session.id, "resume", human)
        assert (resumed.phase, resumed.paused) == (phase, False)
        cancelled = orch.decide(session.id, "cancel", human)
        assert cancelled.phase == "cancelled"
        assert orch.view(cancelled)["allowed_actions"] == []


def test_every_illegal_action_is_refused_naming_action_and_phase(
    orch: Orchestrator, human: Principal
) -> None:
    """Each action not allowed in a phase raises InvalidTransition naming both, writing nothing."""
    sessions = {
        phase: drive(
            orch, (bare_session(orch) if phase in OPENING else start(orch, human)).id, phase
        )
        for phase in PATHS
    }
    for phase, action in _illegal_pairs():
        session = sessions[phase]
        before = event_count(orch, session.id)
        with pytest.raises(InvalidTransition) as caught:
            act(orch, session.id, action)
        message = caught.value.message
        assert message.startswith(f"can't {action}"), message
        assert phase in message and session.id[:8] in message, message
        assert caught.value.phase == phase
        assert event_count(orch, session.id) == before
        assert orch.get(session.id).version == session.version


def test_refusal_message_says_who_the_session_waits_for(
    orch: Orchestrator, human: Principal
) -> None:
    """Approving while tests are being written says the session waits for a tester agent."""
    session = start(orch, human)
    with pytest.raises(InvalidTransition) as caught:
        orch.decide(session.id[:6], "approve", human)
    assert caught.value.message == (
        f"can't approve: session {session.id[:8]} is in generating_tests, "
        "waiting for an agent (tester) to submit tests. Allowed now: submit_tests, pause, cancel"
    )


def test_a_paused_session_refuses_work_until_resumed(orch: Orchestrator, human: Principal) -> None:
    """While paused only resume and cancel are accepted; the phase's own actions are refused."""
    session = start(orch, human)
    orch.decide(session.id, "pause", human)
    for action in ("submit_tests", "pause"):
        with pytest.raises(InvalidTransition, match=f"can't {action}.*paused"):
            act(orch, session.id, action)
    assert orch.view(orch.get(session.id))["allowed_actions"] == ["resume", "cancel"]
    assert orch.view(orch.get(session.id))["waiting_on"] == "human"


def test_agents_can_never_decide_a_gate(
    orch: Orchestrator, human: Principal, agent: Principal
) -> None:
    """Every human action by an agent is PermissionDenied, even at a gate, and writes nothing."""
    session = drive(orch, start(orch, human).id, "awaiting_test_review")
    before = event_count(orch, session.id)
    for action in ("approve", "reject", "retry", "reopen_tests", "pause", "resume", "cancel"):
        with pytest.raises(PermissionDenied, match=f"can't {action}: only a human"):
            orch.decide(session.id, action, agent, comment="x")
    assert event_count(orch, session.id) == before
    with pytest.raises(PermissionDenied, match="only a human"):
        orch.kernel.transition(session.id, lambda s: Command("approve", TESTER))


def test_wrong_actor_kinds_and_roles_are_refused(orch: Orchestrator, human: Principal) -> None:
    """A coder can't submit tests, a human can't report test results, an agent can't pass tests."""
    session = start(orch, human)
    with pytest.raises(PermissionDenied, match=r"role 'tester'.*has role 'coder'"):
        orch.kernel.transition(session.id, lambda s: Command("submit_tests", CODER))
    running = drive(orch, start(orch, human).id, "running_tests")
    for actor in (ALICE, CODER):
        with pytest.raises(PermissionDenied, match="only phasegate may tests_passed"):
            orch.kernel.transition(running.id, lambda s, a=actor: Command("tests_passed", a))
    with pytest.raises(PermissionDenied, match="only an agent may submit_tests"):
        orch.kernel.transition(session.id, lambda s: Command("submit_tests", SYSTEM))


def test_rejections_and_retries_need_a_comment(orch: Orchestrator, human: Principal) -> None:
    """Reject and retry without a comment are refused and change nothing."""
    session = drive(orch, start(orch, human).id, "awaiting_test_review")
    with pytest.raises(InvalidTransition, match="without a comment"):
        orch.decide(session.id, "reject", human, comment="  ")
    assert orch.get(session.id).version == session.version


def test_final_phases_accept_nothing(orch: Orchestrator, human: Principal) -> None:
    """Completed, cancelled and failed sessions refuse every action, saying they are final."""
    for phase in ("completed", "cancelled", "failed"):
        session = drive(orch, start(orch, human).id, phase)
        for action in ("resume", "cancel", "approve"):
            with pytest.raises(
                InvalidTransition, match=f"can't {action}: .* {phase}, which is final"
            ):
                act(orch, session.id, action)
