"""An agent's messages at a gate reach the reviewer but can't make a decision stale."""

from __future__ import annotations

import pytest

from phasegate.domain.principal import Principal
from phasegate.errors import Conflict, InvalidInput
from phasegate.orchestrator import Orchestrator
from tests.conftest import GOOD_TESTS


def at_test_review(orch: Orchestrator, human: Principal, agent: Principal) -> str:
    sid = orch.start_session("design.md", human, again=True).id
    orch.submit(sid, "tests", agent, [{"path": "tests/test_calc.py", "content": GOOD_TESTS}])
    return sid


def test_a_decision_on_the_page_the_human_saw_lands_despite_later_messages(
    orch: Orchestrator, human: Principal, agent: Principal
) -> None:
    """Messages posted after the page loaded don't refuse the decision as stale."""
    sid = at_test_review(orch, human, agent)
    seen = orch.get(sid).version
    for n in range(3):
        orch.request_approval(sid, agent, f"please approve ({n})")
    decided = orch.decide(sid, "approve", human, expected_version=seen)
    assert decided.phase == "generating_implementation"
    assert all(r.ok for r in orch.verify_audit(sid))


def test_a_real_change_since_the_page_loaded_still_refuses_the_decision(
    orch: Orchestrator, human: Principal, agent: Principal
) -> None:
    """Only annotations are tolerated: a new submission makes the decision stale as before."""
    sid = at_test_review(orch, human, agent)
    seen = orch.get(sid).version
    orch.decide(sid, "reject", human, comment="one more case")
    orch.submit(sid, "tests", agent, [{"path": "tests/test_calc.py", "content": GOOD_TESTS + "\n"}])
    with pytest.raises(Conflict, match="changed since you looked"):
        orch.decide(sid, "approve", human, expected_version=seen)


def test_messages_at_one_gate_are_capped(
    orch: Orchestrator, human: Principal, agent: Principal
) -> None:
    """A flood stops at twenty messages per visit of a gate; the next visit starts afresh."""
    sid = at_test_review(orch, human, agent)
    for n in range(20):
        orch.request_approval(sid, agent, f"message {n}")
    before = orch.get(sid).version
    with pytest.raises(InvalidInput, match="already sent 20 messages"):
        orch.request_approval(sid, agent, "one more")
    assert orch.get(sid).version == before
    orch.decide(sid, "reject", human, comment="again")
    orch.submit(sid, "tests", agent, [{"path": "tests/test_calc.py", "content": GOOD_TESTS + "\n"}])
    assert orch.request_approval(sid, agent, "new visit").context["approval_request"]["count"] == 1
