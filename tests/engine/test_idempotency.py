"""Idempotency keys: a retry returns the original result and writes nothing twice."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from engine_helpers import GOOD_TESTS, drive, event_count, start

from phasegate.domain.principal import Principal
from phasegate.errors import IdempotencyMismatch, InvalidInput
from phasegate.orchestrator import Orchestrator


def _count(orch: Orchestrator, table: str) -> int:
    with orch.db.read() as conn:
        return int(conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one())


def test_a_repeated_decision_returns_the_first_result(orch: Orchestrator, human: Principal) -> None:
    """Approving twice with one key approves once and returns the same version both times."""
    session = drive(orch, start(orch, human).id, "awaiting_test_review")
    first = orch.decide(session.id, "approve", human, idempotency_key="k-1")
    events = event_count(orch, session.id)
    again = orch.decide(session.id, "approve", human, idempotency_key="k-1")
    assert (again.id, again.version, again.phase) == (first.id, first.version, first.phase)
    assert event_count(orch, session.id) == events
    assert _count(orch, "idempotency_keys") == 1


def test_a_reused_key_with_other_arguments_is_refused(orch: Orchestrator, human: Principal) -> None:
    """The same key for a different action or comment is refused, and nothing is written."""
    session = drive(orch, start(orch, human).id, "awaiting_test_review")
    orch.decide(session.id, "reject", human, comment="more edge cases", idempotency_key="k-2")
    events = event_count(orch, session.id)
    with pytest.raises(IdempotencyMismatch, match="'k-2' was already used"):
        orch.decide(session.id, "reject", human, comment="other words", idempotency_key="k-2")
    with pytest.raises(IdempotencyMismatch):
        orch.decide(session.id, "pause", human, idempotency_key="k-2")
    assert event_count(orch, session.id) == events


def test_a_repeated_submission_commits_and_runs_once(
    orch: Orchestrator, human: Principal, agent: Principal
) -> None:
    """The same tests resubmitted with the same key: one commit, one run, the first result."""
    sid = start(orch, human).id
    files = [{"path": "test_calc.py", "content": GOOD_TESTS}]
    first = orch.submit(sid, "tests", agent, files, idempotency_key="sub-1")
    again = orch.submit(sid, "tests", agent, files, idempotency_key="sub-1")
    assert (again.version, again.context["tests"]["commit"]) == (
        first.version,
        first.context["tests"]["commit"],
    )
    assert len(orch.test_runs(sid)) == 1
    assert [e["action"] for e in orch.timeline(sid)].count("submit_tests") == 1
    with pytest.raises(IdempotencyMismatch):
        orch.submit(
            sid,
            "tests",
            agent,
            [{"path": "test_calc.py", "content": "x = 1\n"}],
            idempotency_key="sub-1",
        )


def test_a_repeated_start_creates_one_session(orch: Orchestrator, human: Principal) -> None:
    """Starting a session twice with one key returns the first session."""
    design = str(orch.project.root / "design.md")
    first = orch.start_session(design, human, idempotency_key="start-1")
    again = orch.start_session(design, human, idempotency_key="start-1")
    assert again.id == first.id
    assert _count(orch, "sessions") == 1


def test_keys_belong_to_their_principal(orch: Orchestrator, human: Principal) -> None:
    """Another human's identical key is a separate request, not a replay of the first."""
    bob = orch.add_principal("human", "bob")[0]
    session = start(orch, human)
    orch.decide(session.id, "pause", human, idempotency_key="same")
    resumed = orch.decide(session.id, "resume", bob, idempotency_key="same")
    assert resumed.paused is False


def test_empty_or_huge_keys_are_invalid(orch: Orchestrator, human: Principal) -> None:
    """A blank or oversized key is refused as invalid input."""
    session = start(orch, human)
    for key in (" ", "k" * 201):
        with pytest.raises(InvalidInput):
            orch.decide(session.id, "pause", human, idempotency_key=key)
    assert orch.get(session.id).paused is False
